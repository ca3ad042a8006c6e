"""A ``/recordings`` file sized before its plan (store/playback/sizing.py): on random footage in a real index
(SQLite and PostgreSQL: the summary is SQL), whenever the sizing answers, its counts and ETag are the plan's, so
the announced ``Content-Length`` and first bytes are the file's; on regular footage it does answer, reading the
tables of the first and last segments only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.index import coverage_marks
from store.index.db import Index
from store.index.timeline import HOUR_US
from store.maintenance import coverage
from store.playback.clips import Clips, _plan_etag
from store.playback.segment_shape import SHAPE_COLUMNS, shape_of
from store.playback.segment_tables import SegmentTable
from store.playback.sizing import MIN_MIDDLE_ROWS
from store.playback.stream_layout import GAP_US, NothingRecorded
from store.segments import row_path, segment_name
from tests.store.playback.test_layout_properties import real_table, segment

CAMERA = "cam0"
T0 = 1_700_000_000_000_000
COLUMNS = ("camera, node, start_us, end_us, frames, size_bytes, sha256, codec, width_px, height_px, path, "
           f"received_us, {', '.join(SHAPE_COLUMNS)}")


class PoolTables:
    """The table cache's ``load`` over tables in memory: the tables the rows were made from, by segment name."""

    def __init__(self, tables: dict[str, SegmentTable]) -> None:
        self.tables = tables
        self.loaded: list[str] = []
        self.misses = 0

    def load(self, segments: Any, name: str, size: int) -> SegmentTable:
        self.loaded.append(name)
        return self.tables[name]


async def footage_index(url: str, rows: list[tuple[int, SegmentTable, bool, int]], summarised: bool = False
                        ) -> Index:
    """An index with a row per (start_us, table, with its shape, file size), its hours marked as ingest marks
    them, and ``summarised``: the hours summarised as the store's coverage task does (their playback parts)."""
    index = await Index.open(url)
    values = []
    for start, table, shaped, size in rows:
        shape = shape_of(table).values() if shaped else (None,) * len(SHAPE_COLUMNS)
        end = start + shape_of(table).end_us
        values.append((CAMERA, "node0", start, end, table.samples, size, "0" * 64, "h264", 320, 240,
                       row_path(segment_name(CAMERA, start)), start, *shape))
    await index.conn.executemany(f"INSERT INTO segments ({COLUMNS}) VALUES ({', '.join('?' * len(values[0]))})",
                                 values)
    await coverage_marks.mark_all(index.conn)
    await index.conn.commit()
    if summarised:
        await coverage.refresh_all(index.conn, rows[-1][0] + 10 * HOUR_US)
    return index


async def sized_and_planned(url: str, rows: list[tuple[int, SegmentTable, bool, int]], from_us: int,
                            to_us: int, summarised: bool = False) -> tuple[Any, Any, PoolTables]:
    index = await footage_index(url, rows, summarised)
    try:
        tables = PoolTables({segment_name(CAMERA, start): table for start, table, _, _ in rows})
        clips = Clips(index, lambda: SimpleNamespace(disk_path=None), tables)  # type: ignore[arg-type]
        sized = await clips._size(CAMERA, from_us, to_us)
        loaded_before = list(tables.loaded)
        try:
            head, segments = await clips._plan(CAMERA, from_us, to_us)
        except NothingRecorded:
            assert sized is None
            return None, None, tables
        tables.loaded = loaded_before
        return sized, (head.counts, _plan_etag(CAMERA, head, segments)), tables
    finally:
        await index.close()


@st.composite
def regular(draw: st.DrawFn) -> SegmentTable:
    """A random table as a node writes them, mostly: samples back to back from a keyframe (random sizes, times
    and keyframes); now and then not (the plan then reads its table, and the sizing must see that)."""
    table, _ = draw(segment(False))
    if draw(st.integers(0, 9)) == 0:
        return table
    sizes = table.sizes.astype(np.int64)
    offsets = 48 + np.concatenate(([0], np.cumsum(sizes)[:-1]))
    keyframes = np.union1d([0], table.keyframes.astype(np.int64))
    return replace(table, offsets=offsets, keyframes=keyframes, stsd=real_table().stsd)


@st.composite
def footage(draw: st.DrawFn) -> tuple[list[tuple[int, SegmentTable, bool, int]], int, int]:
    pool = draw(st.lists(regular(), min_size=1, max_size=3))
    n = draw(st.integers(MIN_MIDDLE_ROWS + 10, MIN_MIDDLE_ROWS + 40))
    rows, start = [], T0
    unshaped = draw(st.integers(0, n - 1)) if draw(st.integers(0, 4)) == 0 else None  # an older row, or none
    for i in range(n):
        table = pool[draw(st.integers(0, len(pool) - 1))]
        shaped = i != unshaped
        rows.append((start, table, shaped, draw(st.integers(100, 10**9))))
        gap = draw(st.sampled_from([0] * 12 + [1, 40, 100_000, GAP_US, GAP_US + 1, 5_000_000, -40]
                                   + [1_500_000_000] * 3))  # 25 min: footage over several hours
        start += shape_of(table).end_us + gap
    from_us = T0 + draw(st.integers(-1_000_000, 3_000_000))
    to_us = start - draw(st.integers(-1_000_000, 3_000_000))
    return rows, from_us, to_us


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=footage(), summarised=st.booleans())
def test_a_sizing_is_the_plan_it_announces(case: tuple[list, int, int], summarised: bool,
                                           new_index_url: Callable[[], str]) -> None:
    """Whole hours from their kept summaries (``summarised``) or from the rows: the same counts as the plan."""
    rows, from_us, to_us = case
    sized, planned, _ = asyncio.run(sized_and_planned(new_index_url(), rows, from_us, to_us, summarised))
    if sized is not None:
        assert sized == planned


def steady(n: int, gaps: dict[int, int] | None = None) -> list[tuple[int, SegmentTable, bool, int]]:
    """``n`` 2 s segments back to back (gaps: µs more before some of them)."""
    table = real_table()
    rows, start = [], T0
    for i in range(n):
        start += (gaps or {}).get(i, 0)
        rows.append((start, table, True, 36_000 + i))
        start += 2_000_000
    return rows


def test_steady_footage_is_sized_from_its_ends(new_index_url: Callable[[], str]) -> None:
    """A day in miniature: 200 segments, two gaps, cut at both ends. Sized, equal to the plan, and only the first
    and last segments' tables read before the answer."""
    rows = steady(200, {50: 10_000_000, 120: 3_000_000})
    end = rows[-1][0] + 2_000_000
    sized, planned, tables = asyncio.run(sized_and_planned(new_index_url(), rows, T0 + 700_000, end - 300_000))
    assert sized is not None and sized == planned
    assert sorted(set(tables.loaded)) == sorted({segment_name(CAMERA, rows[0][0]), segment_name(CAMERA,
                                                                                                rows[-1][0])})


def test_what_the_sizing_leaves_to_the_plan(new_index_url: Callable[[], str]) -> None:
    url = new_index_url
    # A row without a shape (an older index), a short range, and a change of video between the ends.
    no_shape = steady(100)
    no_shape[40] = (no_shape[40][0], no_shape[40][1], False, 1)
    assert asyncio.run(sized_and_planned(url(), no_shape, T0, no_shape[-1][0] + 1_000_000))[0] is None
    short = steady(MIN_MIDDLE_ROWS)
    assert asyncio.run(sized_and_planned(url(), short, T0, short[-1][0] + 1_000_000))[0] is None
    other = replace(real_table(), stsd=real_table().stsd[:49] + b"\x01" + real_table().stsd[50:])
    changed = steady(100)
    changed[60] = (changed[60][0], other, True, 1)
    sized, planned, _ = asyncio.run(sized_and_planned(url(), changed, T0, changed[-1][0] + 1_000_000))
    assert sized is None and planned is not None  # the plan stops there and says why
    # Segments that overlap: the plan takes the later one from its first keyframe after the earlier's last frame.
    overlap = steady(100)
    overlap[70] = (overlap[70][0] - 500_000, overlap[70][1], True, 1)
    assert asyncio.run(sized_and_planned(url(), overlap, T0, overlap[-1][0] + 1_000_000))[0] is None
    assert np.all(np.diff([r[0] for r in overlap]) > 0)


def test_a_summary_batch_stops_after_its_rows(new_index_url: Callable[[], str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Hours summarised with their playback parts cost ~5 µs a segment: a write transaction stops taking hours
    once it has read REFRESH_ROWS segments, so ingest never waits long for the lock."""
    hour = T0 // HOUR_US * HOUR_US + HOUR_US
    rows = [(hour + i * 600_000_000, real_table(), True, 1) for i in range(24)]  # 4 hours, 6 segments each
    monkeypatch.setattr(coverage, "REFRESH_ROWS", 10)

    async def batches() -> list[int]:
        index = await footage_index(new_index_url(), rows)
        try:
            return [await coverage.refresh(index.conn, hour + 10 * HOUR_US) for _ in range(4)]
        finally:
            await index.close()

    assert asyncio.run(batches()) == [2, 2, 0, 0]  # 6 + 6 segments read: over 10 after two hours
