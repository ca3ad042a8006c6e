"""Timelines from hour summaries equal timelines read segment by segment, to the microsecond."""

import asyncio
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocol.ingest import SegmentHeader
from shared.protocol.query import BUCKETS, TimelineParams, TimeRange
from store.index import coverage_marks, timeline
from store.index.db import Index
from store.index.timeline import GAP_TOLERANCE_US, HOUR_US
from store.maintenance import coverage
from tests.store.index_backends import committed_rows

S = 1_000_000
T0 = 1_795_000_000_000_000 // HOUR_US * HOUR_US  # an hour boundary


def oracle(spans: list[tuple[int, int]], lo: int, hi: int, bucket_us: int, offset_us: int) -> dict:
    """The definition, written the plain way: every overlapping segment, clipped to the range."""
    first = (lo + offset_us) // bucket_us * bucket_us - offset_us
    n = -(-(hi - first) // bucket_us)
    counts, recorded = [0] * n, [0] * n
    clipped = sorted((max(s, lo), min(e, hi)) for s, e in spans if s < hi and e > lo)
    intervals: list[list[int]] = []
    for s, e in clipped:
        counts[(s - first) // bucket_us] += 1
        for i in range(n):
            b = first + i * bucket_us
            recorded[i] += max(0, min(e, b + bucket_us) - max(s, b))
        if intervals and s - intervals[-1][1] <= GAP_TOLERANCE_US:
            intervals[-1][1] = max(intervals[-1][1], e)
        else:
            intervals.append([s, e])
    return {"intervals": intervals, "segments": counts, "recorded": recorded}


async def add(index: Index, camera: str, start: int, end: int) -> None:
    header = SegmentHeader(node="node0", camera=camera, start_us=start, end_us=end, frames=1, bytes=100,
                           sha256="0" * 64)
    await index.insert_segment(header, f"segments/{camera}/{start}.mp4", start)


segment_sets = st.lists(
    st.tuples(st.integers(0, 5 * 3600), st.sampled_from([1, 4, 10, 10, 10, 60, 600]),
              st.sampled_from([0, 0, 0, 100_000, 300_000, -200_000])),  # start s, length s, jitter µs
    min_size=0, max_size=60, unique_by=lambda t: t[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment_sets, st.integers(0, 5 * 3600 * S), st.integers(1, 6 * 3600 * S),
       st.sampled_from(["minute", "hour", "day"]), st.sampled_from([0, 3600, -7200, 19800]),
       st.sampled_from(["none", "some", "all"]), st.randoms(use_true_random=False))
def test_timeline_from_summaries_equals_the_definition(new_index_url: Callable[[], str], made, lo_off, length, bucket,
                                                       offset_s, summarised, rnd):
    spans = [(T0 + s * S + jitter, T0 + (s + n) * S + jitter) for s, n, jitter in made if T0 + s * S + jitter > 0]
    lo, hi = T0 + lo_off, T0 + lo_off + length

    async def run() -> dict:
        index = await Index.open(new_index_url())
        try:
            for s, e in spans:
                await add(index, "cam0", s, e)
            await add(index, "cam1", T0, T0 + 10 * S)  # another camera's footage stays out of it
            if summarised != "none":
                await coverage.refresh_all(index.conn, T0 + 10 * 3600 * S)
            if summarised == "some":  # changes after the summaries: those hours are dirty again
                for s, e in rnd.sample(spans, len(spans) // 3):
                    await index.conn.execute("DELETE FROM segments WHERE camera = 'cam0' AND start_us = ?", (s,))
                    await coverage_marks.mark(index.conn, [("cam0", s, e)])
                    spans.remove((s, e))
                await index.conn.commit()
            answer = await timeline.timeline(index.conn, TimelineParams("cam0", TimeRange(lo, hi), bucket, offset_s))
            return answer.to_json()  # the wire form, compared with the oracle's lists
        finally:
            await index.close()

    got = asyncio.run(run())
    want = oracle(spans, lo, hi, BUCKETS[bucket], offset_s * S)
    assert got["intervals"] == want["intervals"]
    assert [b["segments"] for b in got["buckets"]] == want["segments"]
    assert [b["recorded_us"] for b in got["buckets"]] == want["recorded"]
    assert got["recorded_us"] == sum(e - s for s, e in want["intervals"])


async def test_ingest_marks_hours_dirty_and_the_task_summarises_settled_ones(index_url: str) -> None:
    index = await Index.open(index_url)
    try:
        await add(index, "cam0", T0 + HOUR_US - 5 * S, T0 + HOUR_US + 5 * S)  # straddles an hour boundary
        assert committed_rows(index_url, "SELECT hour_us, dirty FROM coverage_hours ORDER BY hour_us") == [
            (T0, 1), (T0 + HOUR_US, 1)]
        assert await coverage.refresh_all(index.conn, T0 + HOUR_US - 1) == 0  # neither hour has ended by then
        assert await coverage.refresh_all(index.conn, T0 + 2 * HOUR_US) == 2
        assert committed_rows(index_url, "SELECT hour_us, segments, recorded_us, intervals, dirty FROM coverage_hours "
                              "ORDER BY hour_us") == [
            (T0, 1, 5 * S, f"[[{T0 + HOUR_US - 5 * S},{T0 + HOUR_US}]]", 0),
            (T0 + HOUR_US, 0, 5 * S, f"[[{T0 + HOUR_US},{T0 + HOUR_US + 5 * S}]]", 0)]
        await index.conn.execute("DELETE FROM segments")
        await coverage_marks.mark_all(index.conn)  # nothing left to mark: the rows stay clean until recomputed
        await coverage_marks.mark(index.conn, [("cam0", T0 + HOUR_US - 5 * S, T0 + HOUR_US + 5 * S)])
        await index.conn.commit()
        assert await coverage.refresh_all(index.conn, T0 + 2 * HOUR_US) == 2
        assert committed_rows(index_url, "SELECT COUNT(*) FROM coverage_hours") == [(0,)]  # no footage, no row
    finally:
        await index.close()


async def test_retention_and_repair_leave_no_stale_summary(tmp_path: Path, index_url: str) -> None:
    from store.maintenance.check import check_store
    from store.maintenance.retention import RetentionPolicy, sweep

    index = await Index.open(index_url)
    try:
        spans = [(T0 + k * 10 * S, T0 + (k + 1) * 10 * S) for k in range(0, 3 * 360, 7)]  # 3 hours, gappy
        for s, e in spans:
            await add(index, "cam0", s, e)
        await coverage.refresh_all(index.conn, T0 + 4 * HOUR_US)
        lo, hi = T0, T0 + 3 * HOUR_US
        now = T0 + 90 * 60 * S + 30 * 86_400 * S  # the first 90 minutes are past the 30-day limit
        assert (await sweep(index, tmp_path, RetentionPolicy(), now)).deleted > 0
        spans = [(s, e) for s, e in spans if e > T0 + 90 * 60 * S]
        got = await timeline.timeline(index.conn, TimelineParams("cam0", TimeRange(lo, hi), "hour"))
        assert [list(i) for i in got.intervals] == oracle(spans, lo, hi, HOUR_US, 0)["intervals"]
        # check --repair --drop-missing drops the rows of missing files (none of these have files): all of them,
        # here (without --drop-missing a repair keeps rows that are mostly missing: the files are likely elsewhere)
        await check_store(tmp_path, index, repair=True, drop_missing=True)
        got = await timeline.timeline(index.conn, TimelineParams("cam0", TimeRange(lo, hi), "hour"))
        assert got.intervals == () and [b.segments for b in got.buckets] == [0, 0, 0]
        await coverage.refresh_all(index.conn, T0 + 4 * HOUR_US)
        assert committed_rows(index_url, "SELECT COUNT(*) FROM coverage_hours") == [(0,)]
    finally:
        await index.close()
