"""A ``/recordings`` file's size before its plan, so the status line of a day's file waits for neither a Python
loop over 8,640 rows nor a file: the first and last segments' tables, the hour summaries between
(``coverage_hours.playback``, store/playback/parts.py) and the rows of the partial hours at the ends.

The plan (stream_layout.plan) takes every segment between the first and the last chunk whole, from its row's
shape, whenever the row allows it. When every row between does (``Part.whole``, one timescale and codec, the
last frame before ``to``) and no two of them are close enough for the plan to move a chunk off its capture time
(``Summary.min_step``), the file's ``Counts`` are sums over those rows plus what the first and last chunks add,
and its media duration follows from the gaps alone: a piece's length is its last chunk's place after its first,
plus that chunk's own length. Whole clean hours give their parts from their summaries; the rest is read from the
rows in SQL (aggregates and one window function: SQLite and PostgreSQL alike). The store then answers with
``Content-Length`` and the head's first bytes, and makes the plan while they are on their way. The plan's
``counts_of`` must equal these counts (tests/store/playback/test_sizing.py checks it on random footage, with and
without hour summaries; the store checks it on every answer and ends one that differs rather than send a wrong
file).

Anything else (a short range, a row without a shape, overlapping or very close segments, a change of codec, many
gaps) gives None: the store makes the plan first, as for any range.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from store.index.timeline import HOUR_US
from store.playback.parts import PACK, Gap, Part, Summary, combine, from_json
from store.playback.rows import WHERE, rows_of, where_args
from store.playback.segment_shape import SHAPE_COLUMNS, SegmentShape, shape_from_row
from store.playback.segment_tables import SegmentTable
from store.playback.stream_head import Counts, counts_of
from store.playback.stream_layout import GAP_US, Chunk, Plan, Planner, Row
from store.segments import name_of
from store.serve.media_requests import in_worker

Wanted = list[tuple[str, int, int, SegmentShape | None]]  # (segment name, start_us, size_bytes, shape)
Loader = Callable[[Wanted], Callable[[int], SegmentTable | None]]
MIN_MIDDLE_ROWS = 32  # fewer rows between the ends: the plan itself is as quick
END_ROWS = 8  # rows read at each end of the range for the first and last chunks
MAX_GAPS = 1000  # more pieces than this: the plan (a range that broken is no day of steady footage)
_US = "(play_last_dts * 1000000 + play_timescale / 2) / play_timescale"  # segment_shape.to_us, in SQL
_END_US = "(play_end_dts * 1000000 + play_timescale / 2) / play_timescale"
_SPAN_LIMIT = 1 << 38  # µs: a capture time packed with an own length (parts.PACK) is less than this after its
# span's start (~3 days)


@dataclass(frozen=True)
class Sizing:
    counts: Counts
    tail: tuple[Chunk, ...]  # the chunks of the last rows (keys: tail_keys + their index among them)


def etag_of(camera: str, counts: Counts, rows: int, start_sum: int, size_bytes: int, first: tuple[int, int, int],
            last: tuple[int, int, int]) -> str:
    """A strong validator of the file's bytes: they follow from its counts, the segments it takes (immutable
    files, named by camera and start) and where it cuts the first and last; an equal tag is an equal file even
    once the clip was dropped and made again (RFC 9110 §8.8.3). ``start_sum``: the rows' start times after the
    first's, summed; ``first``/``last``: (start_us, first, end)."""
    text = f"{camera} {counts} {rows} {start_sum} {size_bytes} {first} {last}"
    return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


def plan_etag(camera: str, plan: Plan, starts: Sequence[int], sizes: Sequence[int]) -> str:
    """``etag_of`` a whole plan (``starts``/``sizes``: every row's, by key)."""
    chunks = plan.chunks
    a, z = chunks[0], chunks[-1]
    origin = starts[a.key]  # start times are summed after the first chunk's (their sum would overflow SQL's)
    return etag_of(camera, counts_of(plan), len(chunks), sum(starts[c.key] - origin for c in chunks),
                   sum(sizes[c.key] for c in chunks), (starts[a.key], a.first, a.end), (starts[z.key], z.first, z.end))


def _margin_us(timescale: int) -> int:
    """Consecutive chunks further apart than this never have the plan move the later one off its capture time
    (stream_layout._timed: its rounding leaves each chunk within a tick, and a tick is 1e6 / timescale µs)."""
    return 2 * (1_000_000 // timescale) + 2


async def summary(conn: Any, camera: str, where: str, args: tuple[Any, ...], after_us: int, before_us: int,
                  from_us: int, to_us: int, timescale: int, codec: str) -> Summary | None:
    """The summary of the rows matching ``where`` (the clip's row query) that start strictly between
    ``after_us`` and ``before_us``, or None (fewer than MIN_MIDDLE_ROWS, a row the plan would not take whole,
    more than MAX_GAPS gaps). Whole UTC hours come from ``coverage_hours.playback`` where it is clean, the rest
    from the rows (``_sql_part``)."""
    first_hour = -(-max(after_us + 1, from_us) // HOUR_US) * HOUR_US  # rows in it end after from_us: no filter
    end_hour = before_us // HOUR_US * HOUR_US
    kept: dict[int, Part | None] = {}
    if first_hour < end_hour:
        async with conn.execute("SELECT hour_us, playback FROM coverage_hours WHERE camera = ? AND hour_us >= ? "
                                "AND hour_us < ? AND dirty = 0 AND playback IS NOT NULL",
                                (camera, first_hour, end_hour)) as cur:
            kept = {int(h): from_json(text) for h, text in await cur.fetchall()}
        async with conn.execute("SELECT hour_us FROM coverage_hours WHERE camera = ? AND hour_us >= ? AND "
                                "hour_us < ?", (camera, first_hour, end_hour)) as cur:
            listed = {int(h) for h, in await cur.fetchall()}
        for hour in range(first_hour, end_hour, HOUR_US):
            if hour not in listed:
                kept[hour] = None  # no segment overlaps it: none starts in it (store/maintenance/coverage.py)
    else:
        first_hour = end_hour = before_us
    parts: list[Part | None] = []
    lo = after_us + 1
    for hour in range(first_hour, end_hour, HOUR_US):
        if hour in kept:
            parts.append(await _sql_part(conn, where, args, lo, hour))
            parts.append(kept[hour])
            lo = hour + HOUR_US
    parts.append(await _sql_part(conn, where, args, lo, before_us))
    return combine(parts, after_us, to_us, timescale, codec, MAX_GAPS) if sum(
        p.rows for p in parts if p is not None) >= MIN_MIDDLE_ROWS else None


async def _sql_part(conn: Any, where: str, args: tuple[Any, ...], lo: int, hi: int) -> Part | None:
    """``parts.part_of`` the rows matching ``where`` that start in ``[lo, hi)``, in SQL (None for none)."""
    if lo >= hi:
        return None
    # One pair of bounds on start_us (the tighter of the range's and the span's): SQLite searches its index with
    # the first pair it sees and only filters by a second, which here would walk the whole range's entries.
    camera, low, high, from_us = args
    between = where
    bound = (camera, max(low, lo), min(high, hi), from_us)
    async with conn.execute(  # sums, and whether each row can be taken whole: no window, ~0.3 µs a row
        "SELECT COUNT(*), SUM(play_samples), SUM(play_keyframes), SUM(play_payload_bytes), SUM(play_time_runs), "
        "SUM(size_bytes), SUM(start_us - ?), SUM(CASE WHEN play_samples IS NULL OR play_keyframes IS NULL "
        "OR play_lead IS NULL OR play_lead <> 0 OR play_payload_bytes IS NULL OR play_data_offset IS NULL "
        "OR play_timescale IS NULL OR play_last_dts IS NULL OR play_end_dts IS NULL OR play_time_runs IS NULL "
        f"OR play_codec IS NULL OR {_END_US} - {_US} >= {PACK} OR start_us + {_US} - ? >= {_SPAN_LIMIT} "
        "THEN 1 ELSE 0 END), MIN(play_timescale), MAX(play_timescale), MIN(play_codec), MAX(play_codec), "
        f"MAX(start_us + {_US}) FROM segments WHERE {between}", (lo, lo, *bound)) as cur:
        agg = await cur.fetchone()
    if agg is None or not int(agg[0]):
        return None
    count, samples, keyframes, payload, runs, size_bytes, start_sum, not_whole, ts0, ts1, codec0, codec1, last = agg
    ends = []
    for order in ("", " DESC"):  # the first and last rows: by the index, no window
        async with conn.execute(f"SELECT start_us, {', '.join(SHAPE_COLUMNS)} FROM segments WHERE {between} "
                                f"ORDER BY start_us{order} LIMIT 1", bound) as cur:
            row = await cur.fetchone()
        assert row is not None
        ends.append(Row(int(row[0]), shape_from_row(row[1:])))
    whole = not int(not_whole)
    min_step: int | None = None
    gaps: tuple[Gap, ...] = ()
    if whole and int(count) > 1:
        # One window, LAG of the row before's last capture (after ``lo``) and its last sample's own length
        # packed in one integer: a window costs ~1 µs a row a column.
        lagged = (f"SELECT start_us, play_last_dts AS ld, LAG((start_us + {_US} - ?) * {PACK} + {_END_US} - "
                  f"{_US}) OVER (ORDER BY start_us) AS p FROM segments WHERE {between}")
        prev_lu, prev_end = f"(? + p / {PACK})", f"(? + p / {PACK} + p % {PACK})"
        async with conn.execute(f"SELECT MIN(start_us - {prev_lu}), SUM(CASE WHEN start_us - {prev_end} > ? "
                                f"THEN 1 ELSE 0 END) FROM ({lagged}) AS m", (lo, lo, GAP_US, lo, *bound)) as cur:
            steps = await cur.fetchone()
        assert steps is not None
        min_step = None if steps[0] is None else int(steps[0])
        if int(steps[1] or 0) > MAX_GAPS:
            whole = False  # combine gives up on it: a range that broken is no steady footage
        elif int(steps[1] or 0):
            async with conn.execute(
                    f"SELECT ps, pld, {prev_lu}, {prev_end}, start_us FROM (SELECT *, LAG(start_us) OVER w AS ps, "
                    f"LAG(ld) OVER w AS pld FROM ({lagged}) AS l WINDOW w AS (ORDER BY start_us)) AS m "
                    f"WHERE start_us - {prev_end} > ? ORDER BY start_us",
                    (lo, lo, lo, *bound, lo, GAP_US)) as cur:
                gaps = tuple(Gap(*(int(v) for v in g)) for g in await cur.fetchall())
    return Part(int(count), int(samples or 0), int(keyframes or 0), int(payload or 0), int(runs or 0),
                int(size_bytes), int(start_sum), lo, whole, int(ts0) if ts0 is not None and ts0 == ts1 else None,
                str(codec0) if codec0 is not None and codec0 == codec1 else None, int(last or 0), min_step, gaps,
                ends[0], ends[1])


@dataclass(frozen=True)
class Ends:
    """The first chunk and what precedes the rows between (``head_row``: its row's start), made from the first
    rows; the last chunks, from the last rows."""

    planner: Planner
    first: Chunk
    head_row: int  # start_us of the first chunk's row: the rows between start after it


def first_chunk(rows: Sequence[Row], from_us: int, to_us: int, load: Callable[[int], SegmentTable | None]
                ) -> Ends | None:
    """Blocking: the first chunk, from the first rows (None if none of them gives one)."""
    planner = Planner(from_us, to_us)
    for key, row in enumerate(rows):
        chunk = planner.take(key, row, load)
        if chunk is not None:
            return Ends(planner, chunk, row.start_us)
        if planner.truncated is not None:
            return None
    return None


def tail_rows(rows: Sequence[Row], to_us: int) -> int:
    """How many of the last rows (in start order) the plan cuts or reads: the rows from the last one whose
    last sample is before ``to_us`` with a shape, on."""
    n = len(rows)
    while n and ((shape := rows[n - 1].shape) is None or rows[n - 1].start_us + shape.last_us >= to_us):
        n -= 1
    return len(rows) - n


def size(camera: str, ends: Ends, middle: Summary, tail: Sequence[Row], tail_keys: int,
         load: Callable[[int], SegmentTable | None]) -> Sizing | None:
    """Blocking: the counts of the file whose first chunk is ``ends.first``, then the ``middle`` rows whole, then
    the chunks of the ``tail`` rows (``load(i)``: tail row i's table); None when the plan could differ from the
    sums (see the module's docstring)."""
    planner, a = ends.planner, ends.first
    track = planner.track
    assert track is not None
    ts = track.timescale
    margin = _margin_us(ts)
    if middle.min_step is not None and middle.min_step <= margin:
        return None
    m_first, m_last = middle.first, middle.last
    assert m_first.shape is not None and m_last.shape is not None
    planner.last_us = m_last.start_us + m_last.shape.last_us  # as if the plan had taken every row between
    tail_chunks = [c for i, row in enumerate(tail) if (c := planner.take(tail_keys + i, row, load)) is not None]
    if planner.truncated is not None:
        return None
    # The chunks in order, the rows between standing for themselves by their first and last.
    last_mid = _ends_at(m_last.start_us, m_last.shape.last_dts, m_last.start_us + m_last.shape.last_us,
                        m_last.start_us + m_last.shape.end_us)
    joins = list(zip([last_mid, *tail_chunks], tail_chunks, strict=False))  # (a chunk, the next), after the rows
    if m_first.start_us - a.last_us <= margin or any(y.first_us - x.last_us <= margin for x, y in joins):
        return None
    # Pieces: new ones at the gaps between the rows and at the joins with the first and last chunks.
    breaks: list[tuple[Chunk, int]] = []  # (the last chunk of a piece, the first capture of the next)
    if m_first.start_us - a.end_us > GAP_US:
        breaks.append((a, m_first.start_us))
    for g in middle.gaps:
        breaks.append((_ends_at(g.last_start, g.last_dts, g.last_us, g.end_us), g.start_us))
    for x, y in joins:
        if y.first_us - x.end_us > GAP_US:
            breaks.append((x, y.first_us))
    z = tail_chunks[-1] if tail_chunks else last_mid
    duration, piece_first = 0, a.first_us
    for end_chunk, next_first in [*breaks, (z, 0)]:
        duration += (_ticks(end_chunk.first_us - piece_first, ts) + end_chunk.last_dts - end_chunk.first_dts
                     + max(1, _ticks(end_chunk.end_us - end_chunk.last_us, ts)))
        piece_first = next_first
    chunks = [a, *tail_chunks]
    counts = Counts(track, duration, middle.samples + sum(c.samples for c in chunks),
                    middle.keyframes + sum(c.keyframes for c in chunks),
                    middle.time_runs + sum(c.time_runs for c in chunks), middle.rows + len(chunks),
                    middle.payload + sum(c.nbytes for c in chunks))
    return Sizing(counts, tuple(tail_chunks))


def _ends_at(start_us: int, last_dts: int, last_us: int, end_us: int) -> Chunk:
    """A whole segment as the end of a piece: what a piece's length needs of its last chunk."""
    return Chunk(-1, 0, 0, 0, 0, 0, last_dts, 0, start_us, last_us, end_us, 0, ())


def _ticks(us: int, ts: int) -> int:
    return (us * ts + 500_000) // 1_000_000


async def size_range(conn: Any, camera: str, from_us: int, to_us: int, loader: Loader, cancel: threading.Event
                     ) -> tuple[Counts, str] | None:
    """The counts and ETag of the file of ``[from_us, to_us)``, from the rows at both ends and a summary of those
    between, or None: plan first. ``loader(wanted)`` gives a blocking ``load(i)`` of ``wanted[i]``'s table."""
    where, args = WHERE, where_args(camera, from_us, to_us)
    first_rows = await rows_of(conn, camera, from_us, to_us, f"ORDER BY start_us LIMIT {END_ROWS}")
    last_rows = (await rows_of(conn, camera, from_us, to_us, f"ORDER BY start_us DESC LIMIT {END_ROWS}"))[::-1]
    if len(first_rows) < END_ROWS or any(name_of(r[0]) is None for r in (*first_rows, *last_rows)):
        return None
    firsts = [(name_of(p) or "", s, n, shape) for p, s, n, shape in first_rows]
    ends = await in_worker(functools.partial(first_chunk, [Row(s, shape) for _, s, _, shape in firsts], from_us,
                                             to_us, loader(firsts)), cancel)
    if ends is None or ends.planner.track is None:
        return None
    n_tail = tail_rows([Row(s, shape) for _, s, _, shape in last_rows], to_us)
    if n_tail >= END_ROWS:
        return None
    tail = last_rows[len(last_rows) - n_tail:]
    before_us = tail[0][1] if tail else to_us
    if before_us <= ends.head_row:
        return None
    track = ends.planner.track
    middle = await summary(conn, camera, where, args, ends.head_row, before_us, from_us, to_us, track.timescale,
                           track.codec)
    if middle is None:
        return None
    lasts = [(name_of(p) or "", s, n, shape) for p, s, n, shape in tail]
    tail_keys = 1_000_000_000  # the tail's chunk keys only tell its rows apart here
    load_last = loader(lasts)
    sized = await in_worker(functools.partial(
        size, camera, ends, middle, [Row(s, shape) for _, s, _, shape in lasts], tail_keys,
        lambda key: load_last(key - tail_keys)), cancel)
    if sized is None:
        return None
    a = ends.first
    chosen = [lasts[c.key - tail_keys] for c in sized.tail]
    head_size = next(n for _, s, n, _ in firsts if s == ends.head_row)
    if sized.tail:
        z = sized.tail[-1]
        last = (lasts[z.key - tail_keys][1], z.first, z.end)
    else:
        assert middle.last.shape is not None
        last = (middle.last.start_us, 0, middle.last.shape.samples)
    etag = etag_of(camera, sized.counts, 1 + middle.rows + len(chosen),
                   middle.start_sum + sum(s - ends.head_row for _, s, _, _ in chosen),
                   head_size + middle.size_bytes + sum(n for _, _, n, _ in chosen),
                   (ends.head_row, a.first, a.end), last)
    return sized.counts, etag
