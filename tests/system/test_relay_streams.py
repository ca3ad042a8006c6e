"""The relay serves what a node serves: ``?stream=sub|auto`` and ``?format=fmp4``, one upstream per camera and stream.

A real store (its relay), a real ``sht relay`` process and a real node with a
sub stream; viewers of main, sub, fMP4 sub and auto, and a slow auto viewer
that stalls: the relay moves it to its sub upstream and back, and the node
keeps serving one main and one sub subscriber throughout.
"""

from __future__ import annotations

import asyncio
import time
from urllib.request import urlopen

from tests.system.conftest import free_port, get_json, wait_for_health
from tests.system.live_clients import SlowViewer, Viewer, wait_until
from tests.system.test_adaptive import stall_and_recover
from tests.system.test_security import start_system, status_of

NODE_ARGS = ("--size", "640x360", "--fps", "15", "--substream", "160x90", "--motion", "off")


def scrape(url: str) -> str:
    with urlopen(url, timeout=5) as reply:
        return reply.read().decode()


def test_sub_auto_and_fmp4_through_the_relays_cost_the_node_one_subscriber_per_stream(processes, tmp_path):
    store_port, node_port, root, toks = start_system(processes, tmp_path, node_args=NODE_ARGS)
    store, node = f"127.0.0.1:{store_port}", f"http://127.0.0.1:{node_port}"
    deadline = time.monotonic() + 15
    while status_of(f"ws://127.0.0.1:{node_port}/live/cam0", toks["viewer"])[0] != 101:
        assert time.monotonic() < deadline, "node never accepted viewers (store key)"
        time.sleep(0.2)
    assert status_of(f"ws://{store}/live/cam0?stream=best", toks["viewer"])[0] == 400
    relay_port = free_port()
    relay = processes.start("relay", "relay", "--store", f"http://{store}", "--host", "127.0.0.1",
                            "--port", str(relay_port), token=toks["viewer"])
    wait_for_health(f"http://127.0.0.1:{relay_port}", relay)
    live, other = f"ws://{store}/live/cam0", f"ws://127.0.0.1:{relay_port}/live/cam0"

    def node_cam() -> dict:
        return get_json(node + "/health")["cameras"]["cam0"]

    def relay_viewers(stream: str) -> float:
        for line in scrape(f"http://{store}/metrics").splitlines():
            if line.startswith(f'sht_relay_viewers{{camera="cam0",stream="{stream}"}}'):
                return float(line.split()[-1])
        return 0.0

    async def scenario() -> None:
        main = [Viewer(live, toks["viewer"]).start() for _ in range(2)]
        subs = [Viewer(live + "?stream=sub", toks["viewer"]).start() for _ in range(2)]
        fmp4 = Viewer(live + "?stream=sub&format=fmp4", toks["viewer"], fmp4=True).start()
        steady = Viewer(live + "?stream=auto", toks["viewer"]).start()
        elsewhere = Viewer(other + "?stream=sub", toks["viewer"]).start()  # the relay-only process
        slow = SlowViewer(live + "?stream=auto", toks["viewer"]).start()
        everyone = [*main, *subs, fmp4, steady, elsewhere]
        try:
            assert await wait_until(lambda: all(len(v.frames) >= 10 for v in everyone), 20), \
                [(v.url, len(v.frames), v.texts[-2:]) for v in everyone]  # which one starved, and what it heard
            for v in main + [steady]:
                assert (v.texts[0]["stream"], v.texts[0]["width"]) == ("main", 640), v.texts[0]
            for v in subs + [elsewhere]:
                assert (v.texts[0]["stream"], v.texts[0]["width"], v.texts[0]["height"]) == ("sub", 160, 90)
                assert v.frames[0][2], "starts on a keyframe"
            init = fmp4.texts[0]
            assert (init["format"], init["stream"], init["width"]) == ("fmp4", "sub", 160), init
            assert fmp4.binaries[0][4:8] == b"ftyp" and fmp4.binaries[1][4:8] == b"moof"
            # Two relays, each with one main and one sub upstream, whatever their viewers watch.
            assert node_cam()["subscribers"] - 1 == 1 and node_cam()["sub_subscribers"] == 2, node_cam()
            assert relay_viewers("main") == 4 and relay_viewers("sub") == 3  # the auto ones start on main

            await stall_and_recover(slow, lambda: relay_viewers("sub") == 4)
            assert node_cam()["subscribers"] - 1 == 1 and node_cam()["sub_subscribers"] == 2, "no per-viewer cost"
            assert steady.texts[-1]["stream"] == "main" and len(steady.texts) == 1, "a viewer that keeps up stays"
        finally:
            for v in everyone:
                await v.stop()
            await slow.stop()

    asyncio.run(scenario())
