"""Open events at the store (ingest v3): the upsert, the observer told of each change, the handshake's version."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from websockets.asyncio.client import connect

from shared.protocol.ingest import INGEST_VERSION, INGEST_VERSION_HEADER, EventRecord, SegmentHeader
from store.admin.keys import KeyStore
from store.app import Store
from store.index.db import Index
from store.ingest.events import EventNotice, ingest_event

T = 1_764_165_166_000_000
COLUMNS = "start_us, end_us, score, bbox_x, bbox_y, bbox_w, bbox_h, thumb_us, detail, open"


@pytest.fixture
async def index(index_url) -> AsyncIterator[Index]:
    idx = await Index.open(index_url)
    yield idx
    await idx.close()


async def rows(index: Index) -> list[tuple]:
    async with index.conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY id") as cur:
        return list(await cur.fetchall())


OPENED = EventRecord("node0", "cam0", T, T + 100, "motion", 0.3, (0.1, 0.1, 0.2, 0.2), T + 50, open=True)


async def test_an_open_event_is_inserted_updated_then_closed_for_good(index):
    first = await ingest_event(index.conn, OPENED)
    assert (first.new, first.changed, first.ack.duplicate) == (True, True, False)
    assert await rows(index) == [(T, T + 100, 0.3, 0.1, 0.1, 0.2, 0.2, T + 50, "", 1)]

    # Later, still open: the end and score only grow; an update without a box or thumb keeps the row's.
    later = await ingest_event(index.conn, replace(OPENED, end_us=T + 50, score=0.6, bbox=None, thumb_us=None))
    assert (later.event_id, later.new, later.changed, later.ack.duplicate) == (first.event_id, False, True, False)
    assert await rows(index) == [(T, T + 100, 0.6, 0.1, 0.1, 0.2, 0.2, T + 50, "", 1)]

    closed = await ingest_event(index.conn, replace(OPENED, end_us=T + 900, score=0.5, bbox=(0.0, 0.2, 0.5, 0.5),
                                                    thumb_us=T + 400, open=False))
    assert (closed.event_id, closed.new, closed.changed, closed.ack.duplicate) == (first.event_id, False, True, False)
    assert await rows(index) == [(T, T + 900, 0.6, 0.0, 0.2, 0.5, 0.5, T + 400, "", 0)]

    for late in (replace(OPENED, end_us=T + 2000, score=0.9),  # an open one that arrives after the close
                 replace(OPENED, end_us=T + 3000, open=False)):  # the closed one sent again
        again = await ingest_event(index.conn, late)
        assert (again.event_id, again.changed, again.new, again.ack.duplicate) == (first.event_id, False, False, True)
    assert await rows(index) == [(T, T + 900, 0.6, 0.0, 0.2, 0.5, 0.5, T + 400, "", 0)]


async def test_an_old_nodes_closed_event_is_inserted_once(index):
    record = EventRecord("node0", "cam0", T, T + 100, "loss", detail="spool full")
    first, again = await ingest_event(index.conn, record), await ingest_event(index.conn, record)
    assert (first.new, first.changed, again.changed, again.ack.duplicate) == (True, True, False, True)
    assert await rows(index) == [(T, T + 100, 0.0, None, None, None, None, None, "spool full", 0)]


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[tuple[Store, str]]:
    """A whole store on loopback; yields it and a node token for node0."""
    running = Store(tmp_path / "store")
    await running.start("127.0.0.1", 0)
    token = KeyStore(tmp_path / "store").issue("node", "node0", 600)[0]
    try:
        yield running, token
    finally:
        await running.stop()


async def test_the_ingest_handshake_says_the_version_and_the_observer_hears_each_change_once(store):
    running, token = store
    assert running.server is not None
    notices: list[EventNotice] = []
    running.server.ingest.on_event = notices.append
    url = f"ws://127.0.0.1:{running.port}/ingest"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.response is not None
        assert ws.response.headers[INGEST_VERSION_HEADER] == str(INGEST_VERSION) == "4"
        sent = [OPENED, replace(OPENED, end_us=T + 500), replace(OPENED, end_us=T + 900, open=False),
                replace(OPENED, end_us=T + 900, open=False),  # a resend: no change, no notice
                replace(OPENED, start_us=T + 5000, end_us=T + 6000)]
        for record in sent:
            await ws.send(record.serialize())
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["type"] == "ack" and reply["segment_id"] == record.record_id
    assert [(n.record, n.new) for n in notices] == [(sent[0], True), (sent[1], False), (sent[2], False),
                                                    (sent[4], True)]
    assert notices[0].event_id == notices[1].event_id == notices[2].event_id != notices[3].event_id


async def test_an_observer_that_fails_costs_nothing_but_a_log_line(store, caplog):
    running, token = store
    assert running.server is not None

    def broken(_: EventNotice) -> None:
        raise RuntimeError("observer bug")

    running.server.ingest.on_event = broken
    url = f"ws://127.0.0.1:{running.port}/ingest"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(OPENED.serialize())
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ack"
    assert "event observer failed" in caplog.text


async def test_a_newer_event_ends_an_older_one_left_open_whose_own_close_is_still_taken(index):
    await ingest_event(index.conn, OPENED)  # its node then crashed, or its close is still queued behind segments
    other = replace(OPENED, camera="cam1", start_us=T + 10)
    await ingest_event(index.conn, other)
    newer = replace(OPENED, start_us=T + 5_000_000, end_us=T + 5_000_000)
    await ingest_event(index.conn, newer)
    async with index.conn.execute("SELECT camera, start_us, open FROM events ORDER BY id") as cur:
        assert list(await cur.fetchall()) == [("cam0", T, 2), ("cam1", T + 10, 1), ("cam0", T + 5_000_000, 1)]
    late_open = await ingest_event(index.conn, OPENED)
    assert late_open.ack.duplicate and not late_open.changed
    close = await ingest_event(index.conn, replace(OPENED, end_us=T + 2_000_000, open=False))
    assert close.changed and not close.ack.duplicate
    async with index.conn.execute("SELECT end_us, open FROM events WHERE start_us = ?", (T,)) as cur:
        assert await cur.fetchone() == (T + 2_000_000, 0)


STALL = EventRecord("node0", "cam0", T, T, "camera-stalled", 0.0, thumb_us=None,
                    detail="camera cam0: Picamera2 camera 0 delivered no frame in 1.0 s", open=True)


async def test_a_stall_left_open_is_ended_by_the_cameras_next_stall(index):
    await ingest_event(index.conn, STALL)  # its node then lost its spool mid-stall: no close ever comes
    await ingest_event(index.conn, replace(STALL, camera="cam1", start_us=T + 10))
    await ingest_event(index.conn, replace(OPENED, start_us=T + 20))  # a motion event: not a stall
    newer = await ingest_event(index.conn, replace(STALL, start_us=T + 60_000_000, end_us=T + 60_000_000))
    assert newer.new and len(newer.ended) == 1
    async with index.conn.execute("SELECT camera, kind, start_us, open FROM events ORDER BY id") as cur:
        assert list(await cur.fetchall()) == [("cam0", "camera-stalled", T, 2), ("cam1", "camera-stalled", T + 10, 1),
                                              ("cam0", "motion", T + 20, 1), ("cam0", "camera-stalled",
                                                                              T + 60_000_000, 1)]


async def test_a_segment_after_a_stall_began_ends_it_if_left_open_and_its_close_is_still_taken(index):
    def segment(camera: str, start_us: int) -> SegmentHeader:
        return SegmentHeader("node0", camera, start_us, start_us + 2_000_000, 20, 1000, "0" * 64)

    await ingest_event(index.conn, STALL)
    await ingest_event(index.conn, replace(STALL, camera="cam1"))
    await index.insert_segment(segment("cam0", T - 2_000_000), "segments/cam0/a.mp4", T)  # up to the stall
    await index.insert_segment(segment("cam1", T + 9_000_000), "segments/cam1/a.mp4", T)  # another camera's
    async with index.conn.execute("SELECT camera, open FROM events ORDER BY id") as cur:
        assert list(await cur.fetchall()) == [("cam0", 1), ("cam1", 2)]
    await index.insert_segment(segment("cam0", T + 8_000_000), "segments/cam0/b.mp4", T)  # frames again
    async with index.conn.execute("SELECT camera, end_us, open FROM events ORDER BY id") as cur:
        assert list(await cur.fetchall()) == [("cam0", T + 8_000_000, 2), ("cam1", T + 9_000_000, 2)]
    close = await ingest_event(index.conn, replace(STALL, end_us=T + 7_900_000, open=False))  # its node's, late
    assert close.changed and not close.ack.duplicate
    async with index.conn.execute("SELECT open FROM events WHERE camera = 'cam0'") as cur:
        assert await cur.fetchone() == (0,)
