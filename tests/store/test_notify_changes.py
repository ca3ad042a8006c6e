"""The change feed (store/notify/changes.py) on a real index (SQLite and PostgreSQL): what event ingest and the
detector's writes become (new, update, end, with before and after), in order, with the alert rules' verdict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from shared.protocol.ingest import EventRecord
from shared.settings import CameraSettings
from store.index.db import Index
from store.index.event_labels import EventLabelling, set_event_labelling, set_event_snapshot
from store.ingest.events import EventNotice, ingest_event
from store.notify.changes import ChangeFeed, EventChange, Subscription, read_event
from store.notify.options import public_url
from store.notify.rules import AlertDesk

T = 1_764_165_166_000_000
OPENED = EventRecord("node0", "cam0", T, T + 100_000, "motion", 0.3, (0.1, 0.1, 0.2, 0.2), T + 50, open=True)


@pytest.fixture
async def index(index_url: str) -> AsyncIterator[Index]:
    idx = await Index.open(index_url)
    yield idx
    await idx.close()


async def ingest(feed: ChangeFeed, index: Index, record: EventRecord) -> int:
    taken = await ingest_event(index.conn, record)
    if taken.changed:
        feed.ingested(EventNotice(taken.event_id, record, taken.new, taken.ended))
    return taken.event_id


async def take(subscription: Subscription, n: int) -> list[EventChange]:
    changes = []
    iterator = aiter(subscription)
    for _ in range(n):
        changes.append(await asyncio.wait_for(anext(iterator), 5))
    return changes


async def test_an_event_is_new_when_it_opens_updated_when_labelled_and_ends_when_closed(index: Index) -> None:
    async def settings(camera: str) -> CameraSettings:
        return CameraSettings()  # notify = objects: an alert once labelled

    feed = ChangeFeed(index.conn, decide=AlertDesk(settings).decide)
    subscription = feed.subscribe("test")
    feed.start()
    try:
        event_id = await ingest(feed, index, OPENED)
        (new,) = await take(subscription, 1)
        assert (new.type, new.before, new.after.id, new.after.end_us, new.after.alert) == ("new", None, event_id,
                                                                                            None, False)
        body = new.to_json()
        assert body["after"]["start"] == "2025-11-26T13:52:46.000000Z" and body["after"]["end"] is None
        assert body["after"]["box"] == [0.1, 0.1, 0.2, 0.2] and body["after"]["snapshot"] is None

        await set_event_labelling(index.conn, event_id, EventLabelling("person", 0.9, (0.2, 0.3, 0.1, 0.4),
                                                                       {"person": 1}))
        feed.labelled(event_id)
        feed.labelled(event_id)  # written again with nothing new: no change
        (labelled,) = await take(subscription, 1)  # before the snapshot is written: the feed reads the row then
        await set_event_snapshot(index.conn, event_id, T + 10, 64, 48, b"\xff\xd8jpeg")
        feed.labelled(event_id)
        (snapshot,) = await take(subscription, 1)
        assert (labelled.type, labelled.before, labelled.after.label, labelled.after.alert) == (
            "update", new.after, "person", True)
        assert labelled.after.box == (0.2, 0.3, 0.1, 0.4) and labelled.after.score == 0.9
        assert (snapshot.type, snapshot.after.snapshot) == ("update", f"/snapshots/{event_id}.jpg")

        await ingest(feed, index, replace(OPENED, end_us=T + 2_000_000, open=False))
        (end,) = await take(subscription, 1)
        assert (end.type, end.before, end.after.alert) == ("end", snapshot.after, True)
        assert end.to_json()["after"]["end"] == "2025-11-26T13:52:48.000000Z"
        assert feed.stats.published == {"new": 1, "update": 2, "end": 1}, "the second labelled report was no news"
    finally:
        await feed.close()


async def test_a_closed_only_event_is_new_then_end_and_a_newer_event_ends_an_open_one(index: Index) -> None:
    feed = ChangeFeed(index.conn)
    subscription = feed.subscribe("test")
    feed.start()
    try:
        old_node = await ingest(feed, index, replace(OPENED, camera="cam1", open=False))
        new, end = await take(subscription, 2)
        assert [(c.type, c.event_id) for c in (new, end)] == [("new", old_node), ("end", old_node)]
        assert new.after.end_us is not None and end.before == new.after

        left_open = await ingest(feed, index, OPENED)
        newer = await ingest(feed, index, replace(OPENED, start_us=T + 5_000_000, end_us=T + 5_000_000))
        changes = await take(subscription, 3)
        assert [(c.type, c.event_id) for c in changes] == [("new", left_open), ("end", left_open), ("new", newer)]
        # The crashed node's own close still comes: the event is over already, so it is an update.
        await ingest(feed, index, replace(OPENED, end_us=T + 3_000_000, open=False))
        (late,) = await take(subscription, 1)
        assert (late.type, late.event_id, late.after.end_us) == ("update", left_open, T + 3_000_000)
    finally:
        await feed.close()
    assert [c async for c in subscription] == [], "closing the feed ends its subscriptions"


async def test_with_a_public_url_an_events_snapshot_is_a_full_url(index: Index) -> None:
    feed = ChangeFeed(index.conn)
    feed.snapshot_base = public_url("https://nas.example:8100/")
    taken = await ingest_event(index.conn, OPENED)
    await set_event_snapshot(index.conn, taken.event_id, T + 10, 64, 48, b"\xff\xd8jpeg")
    found = await read_event(index.conn, taken.event_id, snapshot_base=feed.snapshot_base)
    assert found is not None and found.snapshot == f"https://nas.example:8100/snapshots/{taken.event_id}.jpg"
    plain = await read_event(index.conn, taken.event_id)
    assert plain is not None and plain.snapshot == f"/snapshots/{taken.event_id}.jpg"


@pytest.mark.parametrize("bad", ["nas:8100", "ftp://nas", "https://", "https://nas:99999", "https://nas/?a=1",
                                 "https://nas/#x"])
def test_a_public_url_that_is_not_one_is_refused_naming_the_flag(bad: str) -> None:
    with pytest.raises(ValueError, match="--public-url"):
        public_url(bad)
