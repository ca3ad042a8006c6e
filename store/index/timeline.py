"""The coverage timeline of one camera: recorded intervals, gaps, and per-bucket counts.

A camera-day is 8,640 segments; reading and bucketing them all took most of a
request's 8-12 ms. So whole UTC hours come from ``coverage_hours`` (store/maintenance/coverage.py:
one summary row per camera-hour, kept by a background task) and only the partial
hours at the ends of the range, and hours whose summary is stale, are read segment by
segment. Both paths fold into the same ``TimelineBuilder``, and the answer is the
same to the microsecond as reading every segment (tests/store/test_timeline.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import aiosqlite

from shared.protocol.ingest import MAX_SEGMENT_US
from shared.protocol.query import BUCKETS, MAX_TIMELINE_INTERVALS, TimelineParams
from shared.protocol.results import Timeline, TimelineBucket

GAP_TOLERANCE_US = 250_000  # closer than this, two segments count as continuous recording
HOUR_US = 3_600_000_000
__all__ = ["GAP_TOLERANCE_US", "HOUR_US", "MAX_SEGMENT_US", "TimelineBuilder", "summarise_hour", "timeline"]


class TimelineBuilder:
    """Accumulates pieces of a timeline, in time order, into intervals and bucket arrays."""

    def __init__(self, lo: int, hi: int, bucket_us: int, offset_us: int = 0,
                 max_intervals: int = MAX_TIMELINE_INTERVALS) -> None:
        self.lo, self.hi, self.size = lo, hi, bucket_us
        self.max_intervals = max_intervals
        self.coarsened = False  # some short gaps were closed to keep the intervals under max_intervals
        self.first = (lo + offset_us) // bucket_us * bucket_us - offset_us  # start of the bucket holding lo
        n = -(-(hi - self.first) // bucket_us)  # buckets first + i * size < hi
        self.segments, self.recorded = [0] * n, [0] * n
        self.intervals: list[list[int]] = []
        self._start = 0
        self._end: int | None = None  # end of the interval being extended (none yet)

    def add_spans(self, spans: Iterable[Sequence[int]], a: int, b: int, count_straddlers: bool) -> None:
        """Segments (start_us, end_us) in start order, clipped to [a, b). Each is counted in the bucket of
        its clipped start; one that started before ``a`` only if ``count_straddlers`` (the range's first piece:
        a later piece's straddlers were counted by the piece before it).

        The hot loop of a timeline read from segments: locals, plain ifs."""
        first, size, seg_counts, recorded_by = self.first, self.size, self.segments, self.recorded
        intervals, start, end = self.intervals, self._start, self._end
        for s, e in spans:
            counted = True
            if s < a:
                s, counted = a, count_straddlers
            if e > b:
                e = b
            i = (s - first) // size
            if counted:
                seg_counts[i] += 1
            if e <= s:
                continue  # a straddler of an empty first piece: counted, nothing recorded here
            if end is not None and s - end <= GAP_TOLERANCE_US:
                if e > end:
                    end = e
            else:
                if end is not None:
                    intervals.append([start, end])
                start, end = s, e
            if e - first <= (i + 1) * size:  # within one bucket: the common case
                recorded_by[i] += e - s
                continue
            b0 = first + i * size
            while b0 < e:  # spans bucket boundaries
                overlap = min(e, b0 + size) - max(s, b0)
                if overlap > 0:
                    recorded_by[i] += overlap
                i += 1
                b0 += size
        self._start, self._end = start, end
        self._bound()

    def add_hour(self, hour_us: int, segments: int, recorded_us: int, intervals: Sequence[Sequence[int]]) -> None:
        """One hour's summary; the hour lies inside one bucket (hour or day buckets on whole-hour offsets)."""
        i = (hour_us - self.first) // self.size
        self.segments[i] += segments
        self.recorded[i] += recorded_us
        start, end = self._start, self._end
        for s, e in intervals:
            if end is not None and s - end <= GAP_TOLERANCE_US:
                if e > end:
                    end = e
            else:
                if end is not None:
                    self.intervals.append([start, end])
                start, end = s, e
        self._start, self._end = start, end
        self._bound()

    def finish(self) -> tuple[list[list[int]], list[int], list[int]]:
        """(intervals, segments per bucket, recorded µs per bucket); at most ``max_intervals`` intervals."""
        if self._end is not None:
            self.intervals.append([self._start, self._end])
            self._end = None
        if len(self.intervals) > self.max_intervals:
            self._coarsen()
        return self.intervals, self.segments, self.recorded

    def _bound(self) -> None:
        """Keep the list (and the reply) bounded while adding: coarsen when it doubles the cap."""
        if len(self.intervals) > 2 * self.max_intervals:
            self._coarsen()

    def _coarsen(self) -> None:
        """Close every gap of at most (hi - lo) / max_intervals. The gaps left are longer and lie within the range,
        so fewer than max_intervals remain, and at most max_intervals intervals. Bucket counts stay exact."""
        tolerance = max(GAP_TOLERANCE_US, -(-(self.hi - self.lo) // self.max_intervals))
        merged: list[list[int]] = []
        for s, e in self.intervals:
            if merged and s - merged[-1][1] <= tolerance:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.intervals, self.coarsened = merged, True


def summarise_hour(spans: Iterable[Sequence[int]], hour_us: int) -> tuple[int, int, list[list[int]]]:
    """(segments starting in the hour, µs recorded in it, its intervals clipped to it) from the segments
    overlapping it, in start order: what ``coverage_hours`` keeps."""
    builder = TimelineBuilder(hour_us, hour_us + HOUR_US, HOUR_US)
    builder.add_spans(spans, hour_us, hour_us + HOUR_US, count_straddlers=False)
    intervals, segments, recorded = builder.finish()
    return segments[0], recorded[0], intervals


async def spans_between(conn: aiosqlite.Connection, camera: str, a: int, b: int) -> list[tuple[int, int]]:
    """(start_us, end_us) of the camera's segments overlapping [a, b), in start order."""
    async with conn.execute(
        "SELECT start_us, end_us FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ? "
        "AND end_us > ? ORDER BY start_us", (camera, a - MAX_SEGMENT_US, b, a),
    ) as cur:
        return await cur.fetchall()  # type: ignore[return-value]  # two integer columns


async def timeline(conn: aiosqlite.Connection, p: TimelineParams) -> Timeline:
    lo, hi = p.range.from_us, p.range.to_us
    size = BUCKETS[p.bucket]
    builder = TimelineBuilder(lo, hi, size, p.utc_offset_s * 1_000_000)
    first_hour = -(-lo // HOUR_US) * HOUR_US
    last_hour = hi // HOUR_US * HOUR_US
    if size % HOUR_US or p.utc_offset_s % 3600 or first_hour >= last_hour:
        # Minute buckets, or a local offset that is not whole hours, or no whole hour: segment by segment.
        builder.add_spans(await spans_between(conn, p.camera, lo, hi), lo, hi, count_straddlers=True)
    else:
        builder.add_spans(await spans_between(conn, p.camera, lo, first_hour), lo, first_hour, count_straddlers=True)
        await _add_whole_hours(conn, builder, p.camera, first_hour, last_hour)
        if last_hour < hi:
            builder.add_spans(await spans_between(conn, p.camera, last_hour, hi), last_hour, hi,
                              count_straddlers=False)
    intervals, seg_counts, recorded_by = builder.finish()
    gaps, cursor = [], lo
    for s, e in intervals:
        if s > cursor:
            gaps.append([cursor, s])
        cursor = max(cursor, e)
    if cursor < hi:
        gaps.append([cursor, hi])
    event_counts = [0] * len(seg_counts)
    async with conn.execute("SELECT MAX(end_us - start_us) FROM events") as cur:
        row = await cur.fetchone()
    longest = int(row[0] or 0) if row else 0
    async with conn.execute(
        "SELECT start_us FROM events WHERE camera = ? AND start_us >= ? AND start_us < ? AND end_us > ?",
        (p.camera, lo - longest, hi, lo),
    ) as cur:
        for (s,) in await cur.fetchall():
            i = (max(s, lo) - builder.first) // size
            if 0 <= i < len(event_counts):
                event_counts[i] += 1
    buckets = tuple(TimelineBucket(builder.first + i * size, seg_counts[i], event_counts[i], recorded_by[i])
                    for i in range(len(seg_counts)))
    # Coarsened intervals hold closed gaps: then the buckets' sum is the truer total.
    recorded = sum(recorded_by) if builder.coarsened else sum(e - s for s, e in intervals)
    return Timeline(p.camera, lo, hi, p.bucket, tuple((s, e) for s, e in intervals),
                    tuple((s, e) for s, e in gaps), recorded, buckets)


async def _add_whole_hours(conn: aiosqlite.Connection, builder: TimelineBuilder, camera: str,
                           first_hour: int, last_hour: int) -> None:
    """Hours [first_hour, last_hour) from their summaries; stale ones (dirty) from their segments."""
    async with conn.execute(
        "SELECT hour_us, segments, recorded_us, intervals, dirty FROM coverage_hours "
        "WHERE camera = ? AND hour_us >= ? AND hour_us < ? ORDER BY hour_us", (camera, first_hour, last_hour),
    ) as cur:
        rows = await cur.fetchall()
    stale_from: int | None = None  # start of a run of consecutive stale hours, read as one piece
    stale_to = 0
    for hour, segments, recorded, intervals, dirty in rows:
        if dirty:
            if stale_from is not None and hour == stale_to:
                stale_to = hour + HOUR_US
                continue
            if stale_from is not None:
                await _add_stale(conn, builder, camera, stale_from, stale_to)
            stale_from, stale_to = hour, hour + HOUR_US
            continue
        if stale_from is not None:
            await _add_stale(conn, builder, camera, stale_from, stale_to)
            stale_from = None
        builder.add_hour(hour, segments, recorded, json.loads(intervals))
    if stale_from is not None:
        await _add_stale(conn, builder, camera, stale_from, stale_to)


async def _add_stale(conn: aiosqlite.Connection, builder: TimelineBuilder, camera: str, a: int, b: int) -> None:
    builder.add_spans(await spans_between(conn, camera, a, b), a, b, count_straddlers=False)
