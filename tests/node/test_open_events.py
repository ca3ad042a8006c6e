"""Open events on the node (ingest v3): spooled under their own name, queued right behind the item in flight,
sent only to a store whose handshake says it takes them, closed at the next start if a run left one open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from node.recording.modes import RecordingModes
from node.recording.spool import Spool, SpooledEvent, SpooledSegment
from node.store_link.uploader import Uploader
from shared.protocol.ingest import (
    INGEST_VERSION_HEADER,
    EventRecord,
    IngestReceiver,
    SegmentHeader,
    SegmentReceived,
    sha256_hex,
)

S = 1_000_000
T0 = 1_700_000_000_000_000
OPEN = EventRecord("node0", "cam0", T0 + 5 * S, T0 + 5 * S, "motion", 0.2, (0.1, 0.2, 0.3, 0.4), T0 + 5 * S,
                   open=True)
CLOSED = replace(OPEN, end_us=T0 + 9 * S, score=0.6, open=False)


def segment(spool: Spool, start: int) -> SpooledSegment:
    data = bytes(100)
    return spool.put(SegmentHeader(node="node0", camera="cam0", start_us=start, end_us=start + S, frames=5,
                                   bytes=len(data), sha256=sha256_hex(data)), data)


class FakeStore:
    """Acknowledges everything it is sent, in order; ``version`` None: an old store that says nothing in its
    handshake. ``hold`` (set) keeps the next reply back until cleared, so an item stays in flight."""

    def __init__(self, version: str | None) -> None:
        self.version = version
        self.received: list[str] = []  # record or segment ids, in arrival order
        self.hold = asyncio.Event()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    def respond(self, _: ServerConnection, __: Request, response: Response) -> None:
        if self.version is not None:
            response.headers[INGEST_VERSION_HEADER] = self.version

    async def session(self, ws: ServerConnection) -> None:
        receiver = IngestReceiver()
        async for message in ws:
            got = receiver.receive(message)
            assert got is not None, receiver.data_to_send()
            if isinstance(got, SegmentReceived):
                self.received.append(got.header.segment_id)
                receiver.acknowledge(got.header.segment_id)
            else:
                self.received.append(f"{got.record_id}{' open' if got.open else ''}")
                receiver.acknowledge(got.record_id)
            if self.hold.is_set():
                self.hold.clear()
                self.holding.set()
                await self.release.wait()
            for reply in receiver.data_to_send():
                await ws.send(reply)


@pytest.fixture
async def store_v3() -> AsyncIterator[tuple[str, FakeStore]]:
    async with _fake("3") as running:
        yield running


@pytest.fixture
async def store_v2() -> AsyncIterator[tuple[str, FakeStore]]:
    async with _fake(None) as running:
        yield running


class _fake:
    def __init__(self, version: str | None) -> None:
        self.store = FakeStore(version)

    async def __aenter__(self) -> tuple[str, FakeStore]:
        self.server = await serve(self.store.session, "127.0.0.1", 0, process_response=self.store.respond)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}", self.store

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - polls plain attributes, with nothing to wait on
            await asyncio.sleep(0.01)


async def run_until_drained(up: Uploader, store: FakeStore, count: int) -> None:
    task = asyncio.create_task(up.run())
    try:
        await wait_until(lambda: len(store.received) >= count and not up.pending)
    finally:
        task.cancel()


def test_an_open_event_has_its_own_spool_file_so_sending_it_never_removes_the_closed_one(tmp_path):
    spool = Spool(tmp_path)
    opened, closed = spool.put_event(OPEN), spool.put_event(CLOSED)
    assert opened.path.name == "cam0-motion-1700000005000000.open.json"
    assert closed.path.name == "cam0-motion-1700000005000000.json"
    spool.remove(opened)
    assert [i.record for i in Spool(tmp_path).scan() if isinstance(i, SpooledEvent)] == [CLOSED]


def test_an_event_a_run_left_open_is_closed_at_the_next_start(tmp_path):
    Spool(tmp_path).put_event(OPEN)
    (item,) = Spool(tmp_path).scan()
    assert isinstance(item, SpooledEvent) and item.record == replace(OPEN, open=False)
    assert sorted(p.name for p in (tmp_path / ".events").iterdir()) == ["cam0-motion-1700000005000000.json"]
    # With its closed version already spooled, only that one is sent.
    Spool(tmp_path).put_event(OPEN)
    (item,) = Spool(tmp_path).scan()
    assert isinstance(item, SpooledEvent) and item.record == replace(OPEN, open=False)
    assert len(list((tmp_path / ".events").iterdir())) == 1


async def test_open_events_go_first_to_a_v3_store(tmp_path, store_v3):
    url, store = store_v3
    spool = Spool(tmp_path)
    up = Uploader(url, spool, "node0", limit_bytes=10**9)
    for i in range(3):
        up.add(segment(spool, T0 + i * S))
    up.add(spool.put_event(replace(CLOSED, start_us=T0)))
    up.add(spool.put_event(OPEN))  # queued last, sent first: nothing is in flight yet
    up.add(spool.put_event(replace(OPEN, start_us=T0 + 7 * S, end_us=T0 + 7 * S)))  # behind the first open one
    await run_until_drained(up, store, 6)
    assert store.received == ["cam0-motion-1700000005000000 open", "cam0-motion-1700000007000000 open",
                              "cam0-1700000000000000", "cam0-1700000001000000", "cam0-1700000002000000",
                              "cam0-motion-1700000000000000"]
    assert up.store_version == 3 and up.takes_open_events and up.open_events_dropped == 0
    assert not list((tmp_path / ".events").iterdir())


async def test_an_open_event_goes_right_behind_the_item_in_flight(tmp_path, store_v3):
    url, store = store_v3
    spool = Spool(tmp_path)
    up = Uploader(url, spool, "node0", limit_bytes=10**9)
    for i in range(3):
        up.add(segment(spool, T0 + i * S))
    store.hold.set()  # the first segment's ack waits
    task = asyncio.create_task(up.run())
    try:
        await asyncio.wait_for(store.holding.wait(), 10)
        up.add(spool.put_event(OPEN))
        store.release.set()
        await wait_until(lambda: len(store.received) >= 4)
    finally:
        task.cancel()
    assert store.received == ["cam0-1700000000000000", "cam0-motion-1700000005000000 open", "cam0-1700000001000000",
                              "cam0-1700000002000000"]


async def test_a_store_that_does_not_say_its_version_gets_no_open_events(tmp_path, store_v2, caplog):
    url, store = store_v2
    spool = Spool(tmp_path)
    up = Uploader(url, spool, "node0", limit_bytes=10**9)
    up.add(segment(spool, T0))
    for start in (T0 + 5 * S, T0 + 7 * S):
        up.add(spool.put_event(replace(OPEN, start_us=start, end_us=start)))
    up.add(spool.put_event(CLOSED))
    caplog.set_level("INFO")
    await run_until_drained(up, store, 2)
    assert store.received == ["cam0-1700000000000000", "cam0-motion-1700000005000000"]  # the closed one still goes
    assert up.store_version == 2 and up.open_events_dropped == 2
    assert not list((tmp_path / ".events").iterdir())  # dropped from the spool too
    assert caplog.text.count("before open events") == 1  # said once


class Uploads:
    def __init__(self) -> None:
        self.added: list[SpooledEvent] = []

    def add(self, item: SpooledEvent) -> None:  # type: ignore[override]
        self.added.append(item)

    async def add_and_enforce(self, item: SpooledSegment) -> None:
        raise AssertionError("no segment here")


async def test_a_motion_start_spools_and_queues_the_event_open(tmp_path):
    spool, uploads = Spool(tmp_path), Uploads()
    modes = RecordingModes(["cam0"], spool, uploads, lambda: T0)
    ongoing = replace(OPEN, open=False)  # the tracker's view: as it would be reported if it ended now
    modes.motion_started("cam0", ongoing.start_us, ongoing)
    modes.motion_finished_soon(CLOSED)
    await modes.finish()
    assert sorted((i.record.open, i.record.end_us) for i in uploads.added) == [(False, CLOSED.end_us),
                                                                               (True, OPEN.end_us)]
    on_disk = sorted(json.loads(p.read_text())["open"] for p in (tmp_path / ".events").iterdir())
    assert on_disk == [False, True]
    modes.motion_started("cam0", T0 + 20 * S)  # without the event (an older caller): nothing is sent
    await modes.finish()
    assert len(uploads.added) == 2
