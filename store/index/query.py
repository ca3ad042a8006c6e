"""Read-only questions to the index: segments and events by camera and time (timelines: store/index/timeline.py).

Every query is bounded by the ``(camera, start_us)`` and ``(start_us)`` indexes:
a range query starts at ``from_us - longest item`` so it never scans from the
beginning of time, and pages are keyed by ``(start_us, id)``, not OFFSET.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from shared.protocol.query import ListParams
from shared.protocol.results import Event, EventPage, Segment, SegmentPage
from store.index.timeline import MAX_SEGMENT_US


async def longest_event_us(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT MAX(end_us - start_us) FROM events") as cur:
        row = await cur.fetchone()
    return int(row[0] or 0) if row else 0


def _range_clause(p: ListParams, longest_us: int) -> tuple[str, list[Any]]:
    where = ["start_us >= ?", "start_us < ?", "end_us > ?"]
    args: list[Any] = [p.range.from_us - longest_us, p.range.to_us, p.range.from_us]
    if p.cameras:
        where.append(f"camera IN ({','.join('?' * len(p.cameras))})")
        args += list(p.cameras)
    if p.after is not None:
        where.append("(start_us, id) > (?, ?)")
        args += list(p.after)
    return " AND ".join(where), args


async def list_segments(conn: aiosqlite.Connection, p: ListParams) -> SegmentPage:
    where, args = _range_clause(p, MAX_SEGMENT_US)
    async with conn.execute(
        f"SELECT id, camera, node, start_us, end_us, frames, size_bytes, sha256 FROM segments "
        f"WHERE {where} ORDER BY start_us, id LIMIT ?", (*args, p.limit + 1),
    ) as cur:
        rows = list(await cur.fetchall())
    return SegmentPage.of([Segment(*row) for row in rows[: p.limit]], len(rows) > p.limit)


async def list_events(conn: aiosqlite.Connection, p: ListParams) -> EventPage:
    where, args = _range_clause(p, await longest_event_us(conn))
    if p.kind:
        where += " AND kind = ?"
        args.append(p.kind)
    if p.labels:
        # A primary-key probe of event_labels per event in range, not a scan of every event with the label.
        where += (f" AND EXISTS (SELECT 1 FROM event_labels l WHERE l.event_id = events.id AND l.label IN "
                  f"({','.join('?' * len(p.labels))}))")
        args += list(p.labels)
    async with conn.execute(
        f"SELECT id, camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, bbox_h, thumb_us, "
        f"locked, detail, open, label, label_score, label_x, label_y, label_w, label_h, labels, "
        f"EXISTS (SELECT 1 FROM event_snapshots WHERE event_id = events.id) "
        f"FROM events WHERE {where} ORDER BY start_us, id LIMIT ?", (*args, p.limit + 1),
    ) as cur:
        rows = list(await cur.fetchall())
    return EventPage.of([_event(row) for row in rows[: p.limit]], len(rows) > p.limit)


def _event(row: Sequence[Any]) -> Event:
    (i, cam, node, s, e, kind, score, bx, by, bw, bh, thumb, locked, detail,
     is_open, label, label_score, lx, ly, lw, lh, labels, snapshot) = row
    return Event(i, cam, node, s, e, kind, score, (bx, by, bw, bh) if bx is not None else None, thumb,
                 bool(locked), detail, is_open == 1, label, label_score,
                 (lx, ly, lw, lh) if lx is not None else None, json.loads(labels) if labels is not None else None,
                 bool(snapshot))


async def segments_for_range(conn: aiosqlite.Connection, camera: str, from_us: int,
                             to_us: int) -> list[tuple[str, int, int]]:
    """(path, start_us, end_us) of one camera's segments overlapping a range, in time order."""
    async with conn.execute(
        "SELECT path, start_us, end_us FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ? "
        "AND end_us > ? ORDER BY start_us", (camera, from_us - MAX_SEGMENT_US, to_us, from_us),
    ) as cur:
        return [(path, s, e) for path, s, e in await cur.fetchall()]


async def bytes_for_range(conn: aiosqlite.Connection, camera: str, from_us: int, to_us: int) -> int:
    """Total size of the segments ``segments_for_range`` lists: an upper bound for an export's clip."""
    async with conn.execute(
        "SELECT COALESCE(SUM(size_bytes), 0) FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ? "
        "AND end_us > ?", (camera, from_us - MAX_SEGMENT_US, to_us, from_us),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def segment_near(conn: aiosqlite.Connection, camera: str, at_us: int) -> tuple[str, int, int] | None:
    """The segment containing ``at_us``, else the closest one before or after it."""
    async with conn.execute(
        "SELECT path, start_us, end_us FROM segments WHERE camera = ? AND start_us <= ? "
        "ORDER BY start_us DESC LIMIT 1", (camera, at_us),
    ) as cur:
        before = await cur.fetchone()
    if before is not None and before[2] > at_us:
        return before[0], before[1], before[2]
    async with conn.execute(
        "SELECT path, start_us, end_us FROM segments WHERE camera = ? AND start_us > ? ORDER BY start_us LIMIT 1",
        (camera, at_us),
    ) as cur:
        after = await cur.fetchone()
    options = [r for r in (before, after) if r is not None]
    if not options:
        return None
    best = min(options, key=lambda r: min(abs(at_us - r[1]), abs(at_us - r[2])))
    return best[0], best[1], best[2]


async def known_cameras(conn: aiosqlite.Connection) -> set[str]:
    """Cameras with footage: a skip-scan of the camera index, one probe per camera, not per row."""
    async with conn.execute(
        "WITH RECURSIVE c(cam) AS (SELECT MIN(camera) FROM segments UNION ALL "
        "SELECT (SELECT MIN(camera) FROM segments WHERE camera > c.cam) FROM c WHERE c.cam IS NOT NULL) "
        "SELECT cam FROM c WHERE cam IS NOT NULL"
    ) as cur:
        return {c for (c,) in await cur.fetchall()}
