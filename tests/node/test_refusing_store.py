"""A store that takes the node's connections but refuses every item with ``retry: true`` (its PostgreSQL index or
its bucket is away, docs/cluster.md "What each failure does") is backed off like a store that is down: the node
does not send the same segment again a few times a second, and its backoff starts over at the store's first ack of
a segment. A store whose bucket is away takes events and refuses segments: the events it acknowledges (open ones
go first) start nothing over, and the node's error stays.

A real WebSocket server on loopback stands in for the store.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from node.recording.spool import Spool
from node.store_link.uploader import Uploader
from shared.protocol.ingest import (
    INGEST_VERSION_HEADER,
    OPEN_EVENTS_VERSION,
    EventRecord,
    IngestReceiver,
    Refusal,
    SegmentReceived,
)
from tests.node.test_store_failover import T0, S, segment, wait_until

WATCH_S = 4.0
# 0.25 s doubling, each delay drawn from [ceiling/2, ceiling]: the shortest delays add up to 3.9 s over the first
# five refusals, so at most 6 tries fit in 4 s; without the backoff a refusing store is tried every ~0.2 s (~20).
MOST_TRIES = 6


class RefusingStore:
    def __init__(self) -> None:
        self.refusing = True
        self.tries = 0  # segments received while refusing
        self.acked: list[int] = []
        self.events: list[str] = []  # record ids of the events acknowledged (always: the index is up)

    async def session(self, ws: ServerConnection) -> None:
        receiver = IngestReceiver()
        async for message in ws:
            got = receiver.receive(message)
            if isinstance(got, EventRecord):
                self.events.append(got.record_id)
                receiver.acknowledge(got.record_id)
                for reply in receiver.data_to_send():
                    await ws.send(reply)
                continue
            assert isinstance(got, SegmentReceived), got
            sid = got.header.segment_id
            if self.refusing:
                self.tries += 1
                receiver.refuse(Refusal("index-unavailable", f"store cannot reach its index to record segment "
                                        f"{sid}", sid, retry=True))
            else:
                self.acked.append(got.header.start_us)
                receiver.acknowledge(sid)
            for reply in receiver.data_to_send():
                await ws.send(reply)

    async def start(self) -> tuple[Server, str]:
        def takes_open_events(_: ServerConnection, __: Request, response: Response) -> None:
            response.headers[INGEST_VERSION_HEADER] = str(OPEN_EVENTS_VERSION)

        server = await serve(self.session, "127.0.0.1", 0, process_response=takes_open_events)
        return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_store_refusing_with_retry_is_backed_off_and_its_first_ack_starts_the_backoff_over(tmp_path):
    store = RefusingStore()
    server, url = await store.start()
    spool = Spool(tmp_path)
    up = Uploader(url, spool, "node0", limit_bytes=10**9)
    up.add(segment(spool, T0))
    up.add(segment(spool, T0 + S))
    task = asyncio.create_task(up.run())
    try:
        await asyncio.sleep(WATCH_S)
        assert 3 <= store.tries <= MOST_TRIES, f"{store.tries} tries in {WATCH_S:.0f} s of refusals"
        assert up.rotation is not None and up.rotation.status(0)[0].failures == store.tries
        assert "index-unavailable" in (up.last_error or "") and len(up.pending) == 2
        store.refusing = False
        await wait_until(lambda: not up.pending, 15)  # within the backoff's ceiling (10 s) at most
        assert store.acked == [T0, T0 + S] and up.last_error is None
        assert up.rotation.status(0)[0].failures == 0
    finally:
        task.cancel()
        server.close()


async def test_events_a_store_takes_while_it_refuses_segments_start_nothing_over(tmp_path):
    store = RefusingStore()
    server, url = await store.start()
    spool = Spool(tmp_path)
    up = Uploader(url, spool, "node0", limit_bytes=10**9)
    up.add(segment(spool, T0))
    task = asyncio.create_task(up.run())
    try:
        for i in range(int(WATCH_S / 0.5)):  # a motion event opening every half second, as a busy scene makes
            up.add(spool.put_event(EventRecord("node0", "cam0", T0 + i * S, T0 + i * S, "motion", 0.5, open=True)))
            await asyncio.sleep(0.5)
        assert store.events, "no open event reached the store"
        assert 3 <= store.tries <= MOST_TRIES, f"{store.tries} tries in {WATCH_S:.0f} s of refused segments"
        assert "index-unavailable" in (up.last_error or ""), up.last_error
        store.refusing = False
        await wait_until(lambda: not up.pending, 15)
        assert store.acked == [T0] and up.last_error is None
    finally:
        task.cancel()
        server.close()
