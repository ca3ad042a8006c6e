"""Labels in the index (schema 3): the upgrade from version 2, labelling writes, search by label, snapshots."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.protocol.ingest import EventRecord
from shared.protocol.query import ListParams, TimeRange
from shared.query_client import StoreClient, StoreError
from store.app import Store
from store.index import query
from store.index.db import Index
from store.index.event_labels import EventLabelling, event_snapshot, set_event_labelling, set_event_snapshot
from store.index.migrations import SCHEMA_VERSION
from store.ingest.events import ingest_event
from store.maintenance.rebuild import rebuild_index

S = 1_000_000
T = 1_764_165_166_000_000
V2_SCHEMA = Path(__file__).with_name("schema_v2.sql")
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2000 + b"\xff\xd9"  # 512 KB: two chunks on the wire


def make_v2_index(path: Path) -> None:
    """An index as a version-2 store left it: its schema, an event and a segment."""
    with sqlite3.connect(path) as conn:
        conn.executescript(V2_SCHEMA.read_text())
        conn.execute("INSERT INTO schema_version (version) VALUES (2)")
        conn.execute("INSERT INTO events (camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, "
                     "bbox_h, thumb_us, detail, locked) VALUES ('cam0', 'node0', ?, ?, 'motion', 0.5, 0.1, 0.2, "
                     "0.3, 0.4, ?, '', 1)", (T, T + 5 * S, T + S))
        conn.execute("INSERT INTO segments (camera, node, start_us, end_us, frames, size_bytes, sha256, codec, "
                     "width_px, height_px, path, received_us) VALUES ('cam0', 'node0', ?, ?, 20, 100, ?, 'h264', "
                     "320, 180, 'segments/cam0/x.mp4', ?)", (T, T + 2 * S, "0" * 64, T))
    conn.close()


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


async def test_a_version_2_index_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    old = tmp_path / "index.sqlite3"
    make_v2_index(old)
    for _ in range(2):  # a second open of the upgraded file changes nothing
        index = await Index.open(old)
        await index.close()
    fresh = tmp_path / "fresh.sqlite3"
    await (await Index.open(fresh)).close()
    with sqlite3.connect(old) as conn, sqlite3.connect(fresh) as new:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(5,)]
        assert columns(conn, "events") == columns(new, "events")  # the same order: rebuild and SELECT * agree
        assert conn.execute("SELECT camera, start_us, end_us, score, bbox_x, thumb_us, locked, open, label, labels "
                            "FROM events").fetchall() == [("cam0", T, T + 5 * S, 0.5, 0.1, T + S, 1, 0, None, None)]
        assert conn.execute("SELECT COUNT(*) FROM segments").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM event_labels").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM event_snapshots").fetchone() == (0,)
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"events_open", "event_labels_by_event"} <= indexes


async def test_rebuild_carries_a_version_2_indexs_events_over(tmp_path):
    make_v2_index(tmp_path / "index.sqlite3")
    (tmp_path / "segments").mkdir()
    report = await rebuild_index(tmp_path)
    assert report.carried["events"] == 1 and not report.notes, report.notes
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        assert conn.execute("SELECT id, camera, start_us, locked, open, labels FROM events").fetchall() == \
            [(1, "cam0", T, 1, 0, None)]


async def test_rebuild_carries_labels_and_snapshots_with_their_events(tmp_path):
    index = await Index.open(tmp_path / "index.sqlite3")
    event_id = (await ingest_event(index.conn, motion(T))).event_id
    await set_event_labelling(index.conn, event_id, PERSON)
    await set_event_snapshot(index.conn, event_id, T + S, 640, 360, JPEG)
    await index.close()
    (tmp_path / "segments").mkdir()
    report = await rebuild_index(tmp_path)
    assert (report.carried["event_labels"], report.carried["event_snapshots"]) == (2, 1)
    index = await Index.open(tmp_path / "index.sqlite3")
    try:
        page = await query.list_events(index.conn, ListParams(TimeRange(T - S, T + 60 * S), labels=("car",)))
        assert [(e.id, e.label, e.labels, e.snapshot) for e in page.items] == [(event_id, "person", PERSON.labels,
                                                                                 True)]
        assert await event_snapshot(index.conn, event_id) == (T + S, 640, 360, JPEG)
    finally:
        await index.close()


@pytest.fixture
async def index(index_url) -> AsyncIterator[Index]:
    idx = await Index.open(index_url)
    yield idx
    await idx.close()


def motion(start: int, camera: str = "cam0", open_: bool = False) -> EventRecord:
    return EventRecord("node0", camera, start, start + 4 * S, "motion", 0.4, (0.1, 0.1, 0.5, 0.5), start + S,
                       open=open_)


PERSON = EventLabelling("person", 0.91, (0.25, 0.1, 0.2, 0.6), {"person": 2, "car": 1})


async def test_labelling_is_written_whole_and_replaced_whole(index):
    event_id = (await ingest_event(index.conn, motion(T))).event_id
    await set_event_labelling(index.conn, event_id, PERSON)
    async with index.conn.execute("SELECT label, label_score, label_x, label_y, label_w, label_h, labels FROM events"
                                  ) as cur:
        assert await cur.fetchall() == [("person", 0.91, 0.25, 0.1, 0.2, 0.6, '{"car": 1, "person": 2}')]
    async with index.conn.execute("SELECT label, event_id, count FROM event_labels ORDER BY label") as cur:
        assert await cur.fetchall() == [("car", event_id, 1), ("person", event_id, 2)]
    await set_event_labelling(index.conn, event_id, EventLabelling(None, None, None, {}))  # analysed: nothing
    async with index.conn.execute("SELECT label, label_score, label_x, labels FROM events") as cur:
        assert await cur.fetchall() == [(None, None, None, "{}")]
    async with index.conn.execute("SELECT COUNT(*) FROM event_labels") as cur:
        assert await cur.fetchone() == (0,)


async def test_labelling_an_unknown_event_writes_nothing(index):
    with pytest.raises(LookupError, match="no event with id 42"):
        await set_event_labelling(index.conn, 42, PERSON)
    with pytest.raises(LookupError, match="no event with id 42"):
        await set_event_snapshot(index.conn, 42, T, 1, 1, JPEG)
    async with index.conn.execute("SELECT (SELECT COUNT(*) FROM event_labels) + "
                                  "(SELECT COUNT(*) FROM event_snapshots)") as cur:
        assert await cur.fetchone() == (0,)


@pytest.mark.parametrize("label, score, box, labels", [
    ("person", 0.9, None, {}),  # a label that is not among the confirmed ones
    ("person", 1.5, None, {"person": 1}),
    (None, None, (0.1, 0.2, 0.3), {}),
    (None, None, None, {"person": 0}),
])
def test_an_inconsistent_labelling_is_refused(label, score, box, labels):
    with pytest.raises(ValueError):
        EventLabelling(label, score, box, labels)


async def test_events_by_label_any_of_several_with_the_new_fields(index):
    ids = [(await ingest_event(index.conn, motion(T + i * 10 * S, open_=i == 3))).event_id for i in range(4)]
    await set_event_labelling(index.conn, ids[0], PERSON)
    await set_event_labelling(index.conn, ids[1], EventLabelling("dog", 0.8, (0.0, 0.0, 0.1, 0.1), {"dog": 1}))
    await set_event_labelling(index.conn, ids[2], EventLabelling(None, None, None, {}))
    await set_event_snapshot(index.conn, ids[0], T + S, 640, 360, JPEG)
    rng = TimeRange(T - S, T + 60 * S)

    async def found(*labels: str) -> list[int]:
        return [e.id for e in (await query.list_events(index.conn, ListParams(rng, labels=labels))).items]

    assert await found() == ids
    assert await found("person") == [ids[0]]
    assert await found("car") == [ids[0]]  # any label seen, not only the best one
    assert await found("dog", "person") == ids[:2]
    assert await found("traffic light") == []
    page = await query.list_events(index.conn, ListParams(rng, limit=1, labels=("person", "dog")))
    assert [e.id for e in page.items] == [ids[0]] and page.next is not None  # paged like any other search
    page = await query.list_events(index.conn, ListParams(rng, limit=1, labels=("person", "dog"), after=page.next))
    assert [e.id for e in page.items] == [ids[1]]
    items = (await query.list_events(index.conn, ListParams(rng))).items
    assert [(e.label, e.label_score, e.label_box, e.labels, e.snapshot, e.open) for e in items] == [
        ("person", 0.91, (0.25, 0.1, 0.2, 0.6), {"car": 1, "person": 2}, True, False),
        ("dog", 0.8, (0.0, 0.0, 0.1, 0.1), {"dog": 1}, False, False),
        (None, None, None, {}, False, False),
        (None, None, None, None, False, True),
    ]


# ---- through a real store ------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path, index_url) -> AsyncIterator[tuple[Store, str, str]]:
    """A store on loopback with one labelled, snapshotted event and one that was analysed with nothing found;
    its index the default ROOT/index.sqlite3, or PostgreSQL (``--index``)."""
    running = Store(tmp_path / "store", index=None if index_url.startswith("sqlite:") else index_url)
    await running.start("127.0.0.1", 0)
    assert running.index is not None
    conn = running.index.conn
    first = (await ingest_event(conn, motion(T))).event_id
    await set_event_labelling(conn, first, PERSON)
    await set_event_snapshot(conn, first, T + S, 640, 360, JPEG)
    await set_event_labelling(conn, (await ingest_event(conn, motion(T + 10 * S))).event_id,
                              EventLabelling(None, None, None, {}))
    await ingest_event(conn, motion(T + 20 * S, open_=True))
    assert running.server is not None and running.server.keys is not None
    token = running.server.keys.issue("viewer", "viewer", 600)[0]  # ROOT/keys/ files, or the index's key
    try:
        yield running, f"http://127.0.0.1:{running.port}", token
    finally:
        await running.stop()


async def test_a_snapshot_comes_back_byte_for_byte_and_a_missing_one_says_why(store):
    _, url, token = store
    async with StoreClient(url, token=token) as client:
        result, jpeg = await client.snapshot(1)
        assert jpeg == JPEG and (result.frame_us, result.width, result.height, result.bytes) == \
            (T + S, 640, 360, len(JPEG))
        for event_id, why in ((2, "recognised nothing"), (3, "still going on"), (99, "no event with id 99")):
            with pytest.raises(StoreError) as err:
                await client.snapshot(event_id)
            assert err.value.code == "not-found" and err.value.field == "event" and why in err.value.message


async def sht(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sht", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, "COLUMNS": "200"})  # the table on one line
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_searches_by_label_and_writes_a_snapshot(store, tmp_path):
    _, url, token = store
    common = ("--store", url, "--token", token)
    window = ("--from", "@1764165100", "--to", "@1764165300")
    code, out, err = await sht("search", "--events", *window, "--label", "person", "--label", "dog", "--json", *common)
    assert code == 0, err
    (item,) = json.loads(out)
    assert {k: item[k] for k in ("id", "label", "label_score", "label_box", "labels", "snapshot", "open")} == {
        "id": 1, "label": "person", "label_score": 0.91, "label_box": [0.25, 0.1, 0.2, 0.6],
        "labels": {"car": 1, "person": 2}, "snapshot": True, "open": False}
    code, out, err = await sht("search", "--events", *window, *common)
    assert code == 0, err
    assert "label" in out and "person ×2, car" in out and "0.91" in out and "(going on)" in out
    code, _, err = await sht("search", *window, "--label", "person", *common)
    assert code == 2 and "--label filters events: add --events" in err

    code, out, err = await sht("snapshot", "--event", "1", "-o", str(tmp_path / "s.jpg"), *common)
    assert code == 0, err
    assert (tmp_path / "s.jpg").read_bytes() == JPEG and "640x360" in out
    code, _, err = await sht("snapshot", "--event", "2", "-o", str(tmp_path / "none.jpg"), *common)
    assert code == 2 and "recognised nothing" in err and not (tmp_path / "none.jpg").exists()
