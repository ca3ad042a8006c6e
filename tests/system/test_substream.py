"""A camera's sub stream: a second, smaller encode served at /live/CAM?stream=sub (and auto)."""

from __future__ import annotations

import asyncio

import av
import pytest
import websockets
from websockets.asyncio.client import connect

from shared.protocol.live import LiveFrame, LiveInit, LiveReceiver
from tests.system.conftest import free_port, get_json, wait_for_health


@pytest.fixture
def node(processes, tmp_path):
    port = free_port()
    proc = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(port),
                           "--spool", str(tmp_path / "spool"), "--size", "320x180", "--fps", "10",
                           "--substream", "160x90", "--camera", "cam0=synthetic", "--no-auth", "--motion", "off")
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    return port


async def watch(port: int, query: str, frames: int = 12) -> tuple[LiveInit, list[LiveFrame]]:
    rx = LiveReceiver()
    async with connect(f"ws://127.0.0.1:{port}/live/cam0{query}") as ws:
        init = rx.receive(await ws.recv())
        got: list[LiveFrame] = []
        while len(got) < frames:
            event = rx.receive(await asyncio.wait_for(ws.recv(), 5))
            if isinstance(event, LiveFrame):
                got.append(event)
    assert isinstance(init, LiveInit)
    return init, got


def decoded_size(frames: list[LiveFrame]) -> tuple[int, int]:
    codec = av.CodecContext.create("h264", "r")
    pictures = [p for f in frames for p in codec.decode(av.Packet(f.data))]
    assert len(pictures) >= len(frames) - 1 and frames[0].keyframe
    return pictures[0].width, pictures[0].height


def test_the_sub_stream_is_the_smaller_encode_and_main_is_untouched(node):
    init, frames = asyncio.run(watch(node, "?stream=sub"))
    assert (init.stream, init.width, init.height) == ("sub", 160, 90)
    assert decoded_size(frames) == (160, 90)
    init, frames = asyncio.run(watch(node, ""))
    assert (init.stream, init.width, init.height) == ("main", 320, 180)
    assert decoded_size(frames) == (320, 180)
    init, _ = asyncio.run(watch(node, "?stream=auto", frames=3))
    assert init.stream == "main"  # a viewer that keeps up stays on main (switching: tests/node/test_adaptive.py)
    assert get_json(f"http://127.0.0.1:{node}/health")["cameras"]["cam0"]["substream"] == "160x90"


def test_an_unknown_stream_is_refused(node):
    async def attempt() -> None:
        async with connect(f"ws://127.0.0.1:{node}/live/cam0?stream=best"):
            pass

    with pytest.raises(websockets.InvalidStatus) as err:
        asyncio.run(attempt())
    assert err.value.response.status_code == 400 and b"stream must be main, sub or auto" in err.value.response.body
