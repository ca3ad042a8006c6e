"""``?stream=auto`` end to end: a real node and a real client that stops reading for a while.

The client (``SlowViewer``) has a tiny receive buffer and stops reading: the
node's send to it blocks and its queue overflows, so the node moves it to the
sub stream (a new init, then frames of the smaller size from a keyframe); once
it reads again and keeps up for the policy's ``recover_s``, it is moved back to
main. The default thresholds, the real code path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import av
import pytest

from shared.adaptive import AdaptivePolicy
from tests.system.conftest import free_port, get_json, wait_for_health
from tests.system.live_clients import SlowViewer, wait_until

RECOVER_S = AdaptivePolicy(15).recover_s


def decoded_sizes(frames: list[tuple[float, str, bytes, bool]]) -> set[tuple[int, int]]:
    """Sizes of the pictures decoded from these frames (the first must be a keyframe)."""
    assert frames and frames[0][3], "a stream starts on a keyframe"
    codec = av.CodecContext.create("h264", "r")
    return {(p.width, p.height) for _, _, data, _ in frames for p in codec.decode(av.Packet(data))}


@pytest.fixture
def node(processes, tmp_path):
    port = free_port()
    proc = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(port),
                           "--spool", str(tmp_path / "spool"), "--size", "640x360", "--fps", "15",
                           "--substream", "160x90", "--camera", "cam0=synthetic", "--no-auth", "--motion", "off")
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    return port


async def stall_and_recover(viewer: SlowViewer, served_sub: Callable[[], bool]) -> None:
    """Read, stop reading until moved to sub, read again until moved back to main; checks what arrived.

    ``served_sub``: the server says it sends this viewer its sub stream."""
    assert await wait_until(lambda: len(viewer.frames) >= 10, 10), "the viewer gets main at first"
    assert viewer.streams() == ["main"]
    viewer.pause()
    await asyncio.sleep(4.0)  # a stalled link: the node's send blocks, the viewer's queue overflows
    viewer.resume()
    assert await wait_until(lambda: "sub" in viewer.streams(), 10), viewer.streams()
    moved = next(at for at, init in viewer.inits if init.get("stream") == "sub")
    assert await wait_until(served_sub, 5), "the server sends it the sub stream"
    assert await wait_until(lambda: viewer.streams()[-1] == "main", RECOVER_S + 8), viewer.streams()
    back = viewer.inits[-1][0]
    assert back - moved >= RECOVER_S - 0.5, "back to main only after keeping up for the policy's recover_s"
    assert await wait_until(lambda: sum(1 for f in viewer.frames if f[0] > back) >= 5, 5)
    on_sub = [f for f in viewer.frames if moved <= f[0] < back]
    assert {s for _, s, _, _ in on_sub} == {"sub"} and decoded_sizes(on_sub) == {(160, 90)}
    assert decoded_sizes([f for f in viewer.frames if f[0] > back]) == {(640, 360)}


def test_a_viewer_that_stalls_is_moved_to_sub_and_back_to_main(node):
    health = f"http://127.0.0.1:{node}"

    def sub_subscribers() -> int:
        return get_json(health + "/health")["cameras"]["cam0"]["sub_subscribers"]

    async def scenario() -> None:
        viewer = SlowViewer(f"ws://127.0.0.1:{node}/live/cam0?stream=auto").start()
        try:
            t0 = time.monotonic()
            await stall_and_recover(viewer, lambda: sub_subscribers() == 1)
            assert time.monotonic() - t0 < 40
        finally:
            await viewer.stop()
        assert sub_subscribers() == 0

    asyncio.run(scenario())
