"""The store's live relay with real processes: one upstream per camera, fan-out, node down and back, fMP4."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.system.conftest import get_json, wait_for_health
from tests.system.live_clients import Viewer, wait_until
from tests.system.test_security import start_system, status_of


def node_viewers(node_url: str, camera: str) -> int:
    """Subscribers of a camera on the node, less its recorder."""
    return get_json(node_url + "/health")["cameras"][camera]["subscribers"] - 1


def test_relay_fans_out_one_upstream_and_survives_the_node(processes, tmp_path):
    node_args = ("--camera", "cam1=synthetic", "--fps", "10")
    # Detection off: the store's detector would hold the camera's stream too (its feed shares the relay's
    # upstream); this test counts what viewers alone cost the node.
    store_port, node_port, root, toks = start_system(processes, tmp_path, "--detect", "off", node_args=node_args)
    store, node = f"127.0.0.1:{store_port}", f"http://127.0.0.1:{node_port}"
    live = f"ws://{store}/live/cam0"
    deadline = time.monotonic() + 15
    while status_of(f"ws://127.0.0.1:{node_port}/live/cam0", toks["viewer"])[0] != 101:
        assert time.monotonic() < deadline, "node never accepted viewers (store key)"
        time.sleep(0.2)
    assert status_of(f"ws://{store}/live/cam9", toks["viewer"])[0] == 404
    assert status_of(live)[0] == 401 and status_of(live, toks["node"])[0] == 403
    assert status_of(live + "?format=vp9", toks["viewer"])[0] == 400

    async def scenario() -> None:
        viewers = [Viewer(live, toks["viewer"]).start() for _ in range(4)]
        fmp4 = Viewer(live + "?format=fmp4", toks["viewer"], fmp4=True).start()
        direct = Viewer(f"ws://127.0.0.1:{node_port}/live/cam1?format=fmp4", toks["viewer"], fmp4=True).start()
        assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers + [fmp4, direct]), 15)
        assert direct.texts[0]["mime"].startswith('video/mp4; codecs="avc1.42c0'), direct.texts  # constr. baseline
        assert direct.binaries[0][4:8] == b"ftyp" and all(b[4:8] == b"moof" for b in direct.binaries[1:])
        await direct.stop()
        assert node_viewers(node, "cam0") == 1, "five viewers through the relay cost the node one subscriber"
        for v in viewers:
            assert v.texts[0]["type"] == "init" and v.texts[0]["width"] == 160 and v.frames[0][2], "init, keyframe"
        init = fmp4.texts[0]
        assert init["format"] == "fmp4" and init["mime"].startswith('video/mp4; codecs="avc1.')
        assert fmp4.binaries[0][4:8] == b"ftyp" and fmp4.binaries[1][4:8] == b"moof"
        metrics = await asyncio.to_thread(_scrape, f"http://{store}/metrics")
        assert 'sht_relay_viewers{camera="cam0",stream="main"} 5.0' in metrics
        assert 'sht_relay_upstream_up{camera="cam0",stream="main"} 1.0' in metrics

        # The node dies: viewers stay connected and are told; it comes back: they resume by themselves.
        node_proc = processes.procs[-1]
        node_proc.send_signal(signal.SIGKILL)
        node_proc.wait()
        assert await wait_until(lambda: all("down" in v.states() for v in viewers), 10), viewers[0].texts
        late = Viewer(live, toks["viewer"]).start()  # arrives while the node is down, and leaves
        # Told the camera is down (once, or twice if it arrives while the relay is still noticing), nothing else.
        assert await wait_until(lambda: late.states() and set(late.states()) == {"down"}, 5), late.texts
        await late.stop()
        assert await wait_until(lambda: 'sht_relay_viewers{camera="cam0",stream="main"} 5.0' in _scrape(f"http://{store}/metrics"),
                                5), "a viewer that left while the node was down is let go"
        processes.start("node2", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                        "--store", f"ws://{store}", "--spool", str(tmp_path / "spool"), "--segment-seconds", "1",
                        "--size", "160x120", "--fps", "10", "--camera", "cam0=synthetic", *node_args,
                        token=toks["node"])
        await asyncio.to_thread(wait_for_health, node, processes.procs[-1])
        back = time.monotonic()
        assert await wait_until(lambda: all(v.frames_since(back) >= 5 for v in viewers + [fmp4]), 20)
        for v in viewers:
            assert v.connects == 1, "nobody reconnected: the relay kept the viewers"
            assert v.states()[-2:] == ["up", "init"], v.texts
            first_after = next(f for f in v.frames if f[0] >= back)
            assert first_after[2], "resumed on a keyframe"
        assert fmp4.connects == 1 and fmp4.texts[-1]["type"] == "init"

        # The last viewer leaves: the relay lets go of the node a few seconds later.
        for v in viewers + [fmp4]:
            await v.stop()
        assert node_viewers(node, "cam0") == 1
        assert await wait_until(lambda: node_viewers(node, "cam0") == 0, 10)

    asyncio.run(scenario())


def _scrape(url: str) -> str:
    from urllib.request import urlopen

    with urlopen(url, timeout=5) as reply:
        return reply.read().decode()
