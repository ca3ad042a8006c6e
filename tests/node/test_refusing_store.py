"""A store that takes the node's connections but refuses every item with ``retry: true`` (its PostgreSQL index or
its bucket is away, docs/cluster.md "What each failure does") is backed off like a store that is down: the node
does not send the same segment again a few times a second, and its backoff starts over at the store's first ack.

A real WebSocket server on loopback stands in for the store.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve

from node.recording.spool import Spool
from node.store_link.uploader import Uploader
from shared.protocol.ingest import IngestReceiver, Refusal, SegmentReceived
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

    async def session(self, ws: ServerConnection) -> None:
        receiver = IngestReceiver()
        async for message in ws:
            got = receiver.receive(message)
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


async def test_a_store_refusing_with_retry_is_backed_off_and_its_first_ack_starts_the_backoff_over(tmp_path):
    store = RefusingStore()
    server = await serve(store.session, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
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
