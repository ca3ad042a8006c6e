"""The node's upload and control links with several stores (``--store A,B``): the first that answers, the next one
at once when it goes away, the item in flight sent again to the next store, one shared rotation.

Real WebSocket servers on loopback stand in for the stores; "killing" one aborts its TCP connections without a
close frame and stops listening, as a SIGKILLed process does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from node.recording.spool import Spool, SpooledSegment
from node.store_link.control import ControlLink
from node.store_link.uploader import Uploader
from shared.protocol.control import Hello, parse_control
from shared.protocol.health import NodeHealth
from shared.protocol.ingest import IngestReceiver, SegmentHeader, SegmentReceived, sha256_hex
from shared.store_list import StoreRotation

S = 1_000_000
T0 = 1_700_000_000_000_000


def segment(spool: Spool, start: int) -> SpooledSegment:
    data = start.to_bytes(8, "big") * 10
    return spool.put(SegmentHeader(node="node0", camera="cam0", start_us=start, end_us=start + S, frames=5,
                                   bytes=len(data), sha256=sha256_hex(data)), data)


class FakeStore:
    """Acknowledges every segment on /ingest (unless ``hold`` is set: then it keeps the ack back for good) and
    records the hello on /control."""

    def __init__(self) -> None:
        self.received: list[int] = []  # start_us of the segments acked, in order
        self.hellos: list[str] = []  # node ids
        self.hold = False
        self.holding = asyncio.Event()
        self.server: Server | None = None
        self.url = ""

    async def start(self) -> FakeStore:
        self.server = await serve(self.session, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def session(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/control":
            hello = parse_control(await ws.recv())
            assert isinstance(hello, Hello)
            self.hellos.append(hello.node)
            async for _ in ws:  # heartbeats
                pass
            return
        receiver = IngestReceiver()
        async for message in ws:
            got = receiver.receive(message)
            assert isinstance(got, SegmentReceived), got
            if self.hold:
                self.holding.set()
                await asyncio.Event().wait()  # never acked: the store "dies" with it in flight
            self.received.append(got.header.start_us)
            receiver.acknowledge(got.header.segment_id)
            for reply in receiver.data_to_send():
                await ws.send(reply)

    def kill(self) -> None:
        """As SIGKILL: no more connections, and the open ones are cut without a close frame."""
        assert self.server is not None
        self.server.server.close()  # the listening socket (asyncio's server; connections stay until aborted)
        for connection in list(self.server.connections):
            connection.transport.abort()


@pytest.fixture
async def stores() -> AsyncIterator[tuple[FakeStore, FakeStore]]:
    a, b = await FakeStore().start(), await FakeStore().start()
    yield a, b
    for store in (a, b):
        assert store.server is not None
        store.server.close(close_connections=False)


def dead_url() -> str:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{sock.getsockname()[1]}"


async def wait_until(predicate: Callable[[], bool], seconds: float = 10) -> float:
    """Wait for ``predicate``; return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polls plain attributes, with nothing to wait on
            await asyncio.sleep(0.01)
    return loop.time() - start


async def running(uploader: Uploader) -> asyncio.Task:
    return asyncio.create_task(uploader.run())


async def test_segments_go_to_the_first_store_then_to_the_next_within_2_s_of_its_death(tmp_path, stores):
    a, b = stores
    spool = Spool(tmp_path)
    up = Uploader(f"{a.url},{b.url}", spool, "node0", limit_bytes=10**9)
    for i in range(3):
        up.add(segment(spool, T0 + i * S))
    task = await running(up)
    try:
        await wait_until(lambda: len(a.received) == 3 and not up.pending)
        assert up.store == a.url and up.link == "connected"
        a.kill()  # idle: nothing is being sent when it dies
        took = await wait_until(lambda: up.store == b.url and up.link == "connected")
        assert took < 2.0, f"on the next store {took:.2f} s after the first died"
        for i in range(3, 6):
            up.add(segment(spool, T0 + i * S))
        await wait_until(lambda: not up.pending)
    finally:
        task.cancel()
    assert a.received == [T0, T0 + S, T0 + 2 * S] and b.received == [T0 + 3 * S, T0 + 4 * S, T0 + 5 * S]
    assert up.rotation is not None and up.rotation.switches == 1 and up.resent == 0
    assert not list(spool.scan())  # every segment acked by one store or the other left the spool


async def test_a_segment_in_flight_to_a_store_that_dies_is_sent_again_to_the_next(tmp_path, stores):
    a, b = stores
    spool = Spool(tmp_path)
    up = Uploader(f"{a.url},{b.url}", spool, "node0", limit_bytes=10**9)
    for i in range(3):
        up.add(segment(spool, T0 + i * S))
    a.hold = True  # A takes the first segment and never acks it
    task = await running(up)
    try:
        await asyncio.wait_for(a.holding.wait(), 10)
        assert [i.header.start_us for i in spool.scan() if isinstance(i, SpooledSegment)] == [T0, T0 + S, T0 + 2 * S]
        a.kill()
        took = await wait_until(lambda: len(b.received) == 3 and not up.pending)
    finally:
        task.cancel()
    assert took < 2.0
    assert a.received == [] and b.received == [T0, T0 + S, T0 + 2 * S]  # the half-sent one first, nothing lost
    assert up.resent == 1 and not list(spool.scan())


async def test_the_first_store_that_answers_is_used_and_a_dead_one_is_left_at_once(tmp_path, stores):
    _, b = stores
    spool = Spool(tmp_path)
    dead = dead_url()
    up = Uploader(f"{dead},{b.url}", spool, "node0", limit_bytes=10**9)
    up.add(segment(spool, T0))
    task = await running(up)
    try:
        took = await wait_until(lambda: b.received == [T0])
    finally:
        task.cancel()
    assert took < 2.0 and up.store == b.url and up.last_error is None
    assert up.rotation is not None and up.rotation.status(0)[0].failures == 1
    assert dead in (up.rotation.status(0)[0].last_error or "")


async def test_with_every_store_dead_the_spool_keeps_everything_until_one_answers(tmp_path):
    spool = Spool(tmp_path)
    first, second = dead_url(), dead_url()
    up = Uploader(f"{first},{second}", spool, "node0", limit_bytes=10**9)
    for i in range(2):
        up.add(segment(spool, T0 + i * S))
    task = await running(up)
    try:
        await wait_until(lambda: up.rotation is not None and up.rotation.all_failing)
        await asyncio.sleep(0.5)
        assert len(up.pending) == 2 and len(list(spool.scan())) == 2 and up.link == "disconnected"
        assert up.last_error is not None and (first in up.last_error or second in up.last_error)
        # the second store comes up on its port: the node finds it within its backoff (at most 10 s)
        port = int(second.rsplit(":", 1)[1])
        late = FakeStore()
        late.server = await serve(late.session, "127.0.0.1", port)
        try:
            await wait_until(lambda: not up.pending, 15)
        finally:
            late.server.close()
    finally:
        task.cancel()
    assert late.received == [T0, T0 + S] and not list(spool.scan())


def hello() -> Hello:
    return Hello("node0", 8000, ("cam0",), tls=False)


async def test_the_control_link_follows_the_same_rotation(tmp_path, stores):
    a, b = stores
    rotation = StoreRotation([a.url, b.url])
    spool = Spool(tmp_path)
    up = Uploader(f"{a.url},{b.url}", spool, "node0", limit_bytes=10**9, rotation=rotation)
    control = ControlLink(f"{a.url},{b.url}", hello, NodeHealth, lambda _: None, lambda _: None, rotation=rotation)
    tasks = [asyncio.create_task(up.run()), asyncio.create_task(control.run())]
    try:
        await wait_until(lambda: a.hellos == ["node0"] and control.state == "connected" and up.link == "connected")
        a.kill()
        took = await wait_until(lambda: b.hellos == ["node0"] and control.state == "connected"
                                and up.store == b.url and up.link == "connected")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert took < 2.0 and control.store == b.url and rotation.current == b.url
    # both links saw A die; A failed twice, yet the rotation moved once (a late failure of a store that is no
    # longer current moves nothing)
    assert rotation.switches == 1 and rotation.status(0)[0].failures >= 1
