"""Marking timeline summary hours dirty: the index's half of the ``coverage_hours`` rule.

Every change to ``segments`` marks the hours it touches dirty in the same transaction; the
summaries themselves are recomputed later by store/maintenance/coverage.py (``CoverageTask``).
Here, beside the schema, because ingest, retention, check and the schema upgrade all mark.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from store.index.timeline import HOUR_US, MAX_SEGMENT_US

# Mark every hour overlapped by a segment dirty: an index from before coverage_hours, or after a repair.
# Segments last at most MAX_SEGMENT_US (15 minutes; ingest refuses longer ones), so the start's hour and the
# last microsecond's hour are all of them.
MARK_ALL_SQL = """
INSERT INTO coverage_hours (camera, hour_us, segments, recorded_us, intervals, dirty)
SELECT camera, hour, 0, 0, '[]', 1 FROM (
    SELECT camera, start_us - start_us % 3600000000 AS hour FROM segments
    UNION SELECT camera, (end_us - 1) - (end_us - 1) % 3600000000 FROM segments) AS touched
WHERE true
ON CONFLICT (camera, hour_us) DO UPDATE SET dirty = 1
"""


def hours_touched(start_us: int, end_us: int) -> range:
    """Start of every UTC hour that [start_us, end_us) overlaps (ingest refuses segments longer than
    MAX_SEGMENT_US; capped here too, so no row can ever make this a long list)."""
    end_us = min(end_us, start_us + MAX_SEGMENT_US)
    return range(start_us // HOUR_US * HOUR_US, max(end_us - 1, start_us) // HOUR_US * HOUR_US + 1, HOUR_US)


async def mark(conn: aiosqlite.Connection, spans: Iterable[tuple[str, int, int]]) -> None:
    """Mark dirty the hours these (camera, start_us, end_us) overlap; inside the caller's transaction."""
    rows = [(camera, hour) for camera, start, end in spans for hour in hours_touched(start, end)]
    if rows:
        await conn.executemany(
            "INSERT INTO coverage_hours (camera, hour_us, segments, recorded_us, intervals, dirty) "
            "VALUES (?, ?, 0, 0, '[]', 1) ON CONFLICT (camera, hour_us) DO UPDATE SET dirty = 1", rows)


async def mark_ids(conn: aiosqlite.Connection, ids: list[int]) -> None:
    """Mark dirty the hours of these segments rows (before deleting them; inside the caller's transaction)."""
    marks = ",".join("?" * len(ids))
    await conn.execute(MARK_ALL_SQL.replace("FROM segments", f"FROM segments WHERE id IN ({marks})"), ids + ids)


async def mark_all(conn: aiosqlite.Connection) -> None:
    """Every hour with footage dirty (not committed): after changes made outside the usual paths."""
    await conn.execute(MARK_ALL_SQL)
