"""Viewers that wait for the node together are all woken when it answers (a lost wake-up left some waiting)."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve

from shared.protocol.live import LiveInit, encode_frame
from store.live.relay import Location, Relay, Upstream
from tests.system.live_clients import Viewer, wait_until


def test_a_change_wakes_an_event_taken_before_it() -> None:
    up = Upstream(Relay(lambda camera: Location(None, "test")), "cam0", "main")
    taken = up.changed()
    up._pulse()  # the upstream got its init between a viewer's look at it and the viewer's wait
    assert taken.is_set() and not up.changed().is_set()


async def test_viewers_arriving_together_all_get_frames_once_the_node_answers() -> None:
    answer = asyncio.Event()

    async def node(ws: ServerConnection) -> None:
        await answer.wait()
        await ws.send(LiveInit("cam0", "h264", 64, 48, 50.0).serialize())
        for i in range(400):
            await ws.send(encode_frame(1_000_000 + i * 20_000, i % 25 == 0, b"\x00\x00\x00\x01\x65" + bytes(50)))
            await asyncio.sleep(0.02)

    async with serve(node, "127.0.0.1", 0) as node_server:
        node_port = node_server.sockets[0].getsockname()[1]
        relay = Relay(lambda camera: Location(f"http://127.0.0.1:{node_port}"))

        async def viewer(connection: ServerConnection) -> None:
            await relay.serve(connection, "cam0")

        async with serve(viewer, "127.0.0.1", 0) as relay_server:
            url = f"ws://127.0.0.1:{relay_server.sockets[0].getsockname()[1]}/live/cam0"
            answer.set()  # the node answers at once: its init lands while the viewers are still arriving
            for attempt in range(3):  # a few rounds, each with a fresh upstream
                viewers = [Viewer(url).start() for _ in range(12)]
                try:
                    assert await wait_until(lambda vs=viewers: all(len(v.frames) >= 5 for v in vs), 5), (
                        f"attempt {attempt}: frames per viewer {[len(v.frames) for v in viewers]}")
                finally:
                    for v in viewers:
                        await v.stop()
                relay.close()
                relay.closed = False
                relay.upstreams.clear()
