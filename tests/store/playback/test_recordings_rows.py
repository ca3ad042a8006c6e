"""``/recordings`` laid out from index rows, through a real StoreServer on loopback: rows without a shape are read
once and filled; with shapes only the cut segments are read before answering; a row whose shape no longer matches
its file ends the answer short (never a wrong file) and is mended for the next request; ETag and If-Range."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from store.index.shapes import shape_of_bytes
from store.index.timeline import HOUR_US
from store.ingest.writer import segment_relpath
from store.maintenance import coverage
from store.playback.segment_shape import SHAPE_COLUMNS, shape_from_row, shape_of
from store.playback.segment_tables import read_table
from tests.store.footage import CAMERA, SEGMENT_US, T0, make_footage
from tests.store.playback.test_recordings import Store, decode, open_store, q

S = 1_000_000
SEGMENTS = 8


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_footage(tmp_path, SEGMENTS)
    return tmp_path


@pytest.fixture
async def store(root: Path) -> AsyncIterator[Store]:
    async for s in open_store(root):
        yield s


async def shapes(store: Store) -> dict[int, object]:
    conn = store.server.playback.index.conn
    async with conn.execute(f"SELECT start_us, {', '.join(SHAPE_COLUMNS)} FROM segments ORDER BY start_us") as cur:
        return {int(start): shape_from_row(rest) for start, *rest in await cur.fetchall()}


async def set_sql(store: Store, sql: str, args: tuple = ()) -> None:
    conn = store.server.playback.index.conn
    await conn.execute(sql, args)
    await conn.commit()


def file_shapes(root: Path) -> dict[int, object]:
    out = {}
    for path in sorted((root / "segments").rglob("*.mp4")):
        data = path.read_bytes()
        table = read_table(io.BytesIO(data), len(data))
        out[path] = shape_of(table)
    return out


async def test_rows_without_shapes_are_read_once_then_laid_out_from_their_rows(store: Store, root: Path) -> None:
    await set_sql(store, f"UPDATE segments SET {', '.join(f'{c} = NULL' for c in SHAPE_COLUMNS)}")
    assert set((await shapes(store)).values()) == {None}
    conn = store.server.playback.index.conn
    await coverage.refresh_all(conn, T0 + 10 * HOUR_US)  # hours summarised without shapes
    async with conn.execute("SELECT MAX(dirty) FROM coverage_hours") as cur:
        assert (await cur.fetchone())[0] == 0
    tables = store.server.playback.clips.tables
    doc = await store.json(f"/recordings/{CAMERA}.json?{q(T0 + 500_000, T0 + SEGMENTS * SEGMENT_US - 700_000)}")
    assert doc["frames"] > 0 and tables.misses == SEGMENTS  # every table read (the older index) ...
    filled = await shapes(store)
    assert None not in filled.values()  # ... and each row's shape kept, its hour to be summarised again
    async with conn.execute("SELECT MIN(dirty) FROM coverage_hours") as cur:
        assert (await cur.fetchone())[0] == 1
    assert set(filled.values()) == set(file_shapes(root).values())
    # A fresh store (nothing cached) lays a new range out reading the first and last segment only.
    async for fresh in open_store(root):
        span = q(T0 + 600_000, T0 + SEGMENTS * SEGMENT_US - 700_000)
        doc2 = await fresh.json(f"/recordings/{CAMERA}.json?{span}")
        assert fresh.server.playback.clips.tables.misses == 2
        assert doc2["frames"] == doc["frames"] and doc2["pieces"] == doc["pieces"]
        status, headers, body = await fresh.get(f"/recordings/{CAMERA}.mp4?{span}")
        assert status == 200 and len(body) == int(headers["content-length"])
        assert len(decode(body)) == doc2["frames"]


async def test_a_row_whose_shape_lies_ends_the_answer_short_and_is_mended(store: Store) -> None:
    middle = T0 + 3 * SEGMENT_US
    target = f"/recordings/{CAMERA}.mp4?{q(T0, T0 + SEGMENTS * SEGMENT_US)}"
    status, headers, good = await store.get(target)  # rows filled by this first layout
    assert status == 200 and len(good) == int(headers["content-length"])
    # Whatever made it (a bug, a hand-edited index), a shape that no longer matches its file is caught, not sent.
    await set_sql(store, "UPDATE segments SET play_payload_bytes = play_payload_bytes + 1 WHERE start_us = ?",
                  (middle,))
    other = f"/recordings/{CAMERA}.mp4?{q(T0 + 1, T0 + SEGMENTS * SEGMENT_US)}"  # a new layout, from the rows
    status, headers, cut = await store.get(other)
    assert status == 200 and len(cut) < int(headers["content-length"])
    assert (await shapes(store))[middle] is None  # cleared: the next layout reads that table
    status, headers, mended = await store.get(other)
    assert status == 200 and len(mended) == int(headers["content-length"])
    assert len(decode(mended)) == len(decode(good))
    assert (await shapes(store))[middle] is not None


async def test_etag_and_if_range(store: Store) -> None:
    target = f"/recordings/{CAMERA}.mp4?{q(T0, T0 + 6 * S)}"
    doc = await store.json(target.replace(".mp4", ".json"))
    status, headers, whole = await store.get(target)
    assert status == 200 and headers["etag"] == doc["etag"]
    status, headers, part = await store.get(target, {"Range": "bytes=100-199", "If-Range": doc["etag"]})
    assert status == 206 and part == whole[100:200]
    status, headers, again = await store.get(target, {"Range": "bytes=100-199", "If-Range": '"another-file"'})
    assert status == 200 and again == whole  # not the bytes of some other file mixed in
    # The same footage laid out again (the clip dropped) has the same tag: a player's Range requests still match.
    store.server.playback.clips._clips.clear()
    store.server.playback.clips._held.clear()
    assert (await store.json(target.replace(".mp4", ".json")))["etag"] == doc["etag"]



LONG = 60  # segments: enough for the sizing (store/playback/sizing.py) to answer before the plan


@pytest.fixture
def long_root(tmp_path: Path) -> Path:
    make_footage(tmp_path, LONG)
    return tmp_path


async def test_a_long_range_is_answered_from_its_sizing_with_the_planned_bytes(long_root: Path) -> None:
    target = f"/recordings/{CAMERA}.mp4?{q(T0 + 300_000, T0 + LONG * SEGMENT_US - 500_000)}"
    async for sized in open_store(long_root):
        status, headers, body = await sized.get(target)
        clips = sized.server.playback.clips
        assert clips.sized == 1 and status == 200 and len(body) == int(headers["content-length"])
        assert clips.tables.misses >= LONG  # the plan, made while the answer went out, read the rest
        status, _, part = await sized.get(target, {"Range": "bytes=0-99"})  # the first bytes: from the counts
        assert status == 206 and part == body[:100]
        doc = await sized.json(target.replace(".mp4", ".json"))
    async for planned in open_store(long_root):
        planned.server.playback.clips.sizing = False
        status, headers, again = await planned.get(target)
        assert planned.server.playback.clips.sized == 0
        assert again == body and headers["etag"] == doc["etag"]  # the same file, the same tag, either way
    assert len(decode(body)) == doc["frames"]


async def test_a_plan_that_differs_from_its_sizing_ends_the_answer_and_turns_the_sizing_off(
        long_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store.playback import sizing
    real_size = sizing.size

    def off_by_one(*args, **kwargs):  # a bug in the sizing, as a test makes one
        sized = real_size(*args, **kwargs)
        return None if sized is None else replace(sized, counts=replace(sized.counts, frames=sized.counts.frames + 1))

    monkeypatch.setattr(sizing, "size", off_by_one)
    target = f"/recordings/{CAMERA}.mp4?{q(T0, T0 + LONG * SEGMENT_US)}"
    async for store in open_store(long_root):
        status, headers, cut = await store.get(target)
        assert status == 200 and len(cut) < int(headers["content-length"])
        assert store.server.playback.clips.sizing is False
        status, headers, whole = await store.get(target)
        assert status == 200 and len(whole) == int(headers["content-length"])
        assert len(decode(whole)) > 0


async def test_a_segment_lost_since_its_row_was_written_cuts_one_answer_only(store: Store, root: Path) -> None:
    """Its row says take it whole; its table, read as the moov goes out, is not there: that answer ends short,
    the row's shape is cleared, and the next layout reads the row's table, finds none and leaves it out."""
    files = sorted((root / "segments").rglob("*.mp4"))
    files[3].unlink()
    target = f"/recordings/{CAMERA}.mp4?{q(T0 + 1, T0 + SEGMENTS * SEGMENT_US)}"
    status, headers, cut = await store.get(target)
    assert status == 200 and len(cut) < int(headers["content-length"])
    for _ in range(2):
        status, headers, whole = await store.get(target)
        assert status == 200 and len(whole) == int(headers["content-length"])
        assert len(decode(whole)) == (SEGMENTS - 1) * 20  # every frame but the lost segment's 20


async def test_footage_that_changes_between_the_sizing_and_the_plan_cuts_that_answer_only(
        long_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A segment arriving in the range while its file is laid out (a range ending now): the answer sized before
    it ends short, but that is no bug in the sizing, which stays on; the next answer is whole and sized."""
    from store.playback.clips import Clips
    from tests.store.footage import one_segment
    real_plan = Clips._plan
    late = T0 + LONG * SEGMENT_US  # the next segment, inside the range below

    async def plan_after_a_segment_arrived(self: Clips, camera: str, from_us: int, to_us: int):  # type: ignore[no-untyped-def]
        if not (await shapes_of(self)).get(late):
            header, data = one_segment()
            rel = segment_relpath(CAMERA, late)
            (long_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (long_root / rel).write_bytes(data)
            h = replace(header, start_us=late, end_us=late + (header.end_us - header.start_us))
            await self.index.insert_segment(h, rel.as_posix(), late, shape=shape_of_bytes(data, "late"))
        return await real_plan(self, camera, from_us, to_us)

    async def shapes_of(clips: Clips) -> dict[int, object]:
        async with clips.index.conn.execute("SELECT start_us, play_samples FROM segments") as cur:
            return {int(s): n for s, n in await cur.fetchall()}

    monkeypatch.setattr(Clips, "_plan", plan_after_a_segment_arrived)
    target = f"/recordings/{CAMERA}.mp4?{q(T0, late + SEGMENT_US)}"
    async for store in open_store(long_root):
        status, headers, cut = await store.get(target)
        clips = store.server.playback.clips
        assert status == 200 and len(cut) < int(headers["content-length"]) and clips.sized == 1
        assert clips.sizing is True
        status, headers, whole = await store.get(target)
        assert status == 200 and len(whole) == int(headers["content-length"]) and clips.sized == 2
        assert len(decode(whole)) == (LONG + 1) * 20
