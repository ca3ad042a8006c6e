"""Read-only questions to the index: segments and events by camera and time, timelines.

Every query is bounded by the ``(camera, start_us)`` and ``(start_us)`` indexes:
a range query starts at ``from_us - longest item`` so it never scans from the
beginning of time, and pages are keyed by ``(start_us, id)``, not OFFSET.
"""

from __future__ import annotations

from typing import Any

import aiosqlite

from shared.protocol.query import BUCKETS, ListParams, TimelineParams

MAX_SEGMENT_US = 600 * 1_000_000  # the node refuses --segment-seconds above 600
GAP_TOLERANCE_US = 250_000  # closer than this, two segments count as continuous recording


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


async def list_segments(conn: aiosqlite.Connection, p: ListParams) -> dict[str, Any]:
    where, args = _range_clause(p, MAX_SEGMENT_US)
    async with conn.execute(
        f"SELECT id, camera, node, start_us, end_us, frames, size_bytes, sha256 FROM segments "
        f"WHERE {where} ORDER BY start_us, id LIMIT ?", (*args, p.limit + 1),
    ) as cur:
        rows = list(await cur.fetchall())
    items = [{"id": i, "camera": cam, "node": node, "start_us": s, "end_us": e, "frames": f,
              "bytes": size, "sha256": sha} for i, cam, node, s, e, f, size, sha in rows[: p.limit]]
    return _page(items, len(rows) > p.limit)


async def list_events(conn: aiosqlite.Connection, p: ListParams) -> dict[str, Any]:
    where, args = _range_clause(p, await longest_event_us(conn))
    if p.kind:
        where += " AND kind = ?"
        args.append(p.kind)
    async with conn.execute(
        f"SELECT id, camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, bbox_h, thumb_us, "
        f"locked, detail FROM events WHERE {where} ORDER BY start_us, id LIMIT ?", (*args, p.limit + 1),
    ) as cur:
        rows = list(await cur.fetchall())
    items = [{"id": i, "camera": cam, "node": node, "start_us": s, "end_us": e, "kind": kind, "score": score,
              "bbox": [bx, by, bw, bh] if bx is not None else None, "thumb_us": thumb, "locked": bool(locked),
              "detail": detail}
             for i, cam, node, s, e, kind, score, bx, by, bw, bh, thumb, locked, detail in rows[: p.limit]]
    return _page(items, len(rows) > p.limit)


def _page(items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {"items": items, "next": [items[-1]["start_us"], items[-1]["id"]] if more and items else None}


async def timeline(conn: aiosqlite.Connection, p: TimelineParams) -> dict[str, Any]:
    """Recorded intervals, gaps, and per-bucket counts for one camera over a range.

    One pass over the camera's spans (a day of 10 s segments is 8,640 rows), with buckets
    in lists indexed by bucket number: this is the hot loop of every timeline request.
    """
    lo, hi = p.range.from_us, p.range.to_us
    async with conn.execute(
        "SELECT start_us, end_us FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ? "
        "AND end_us > ? ORDER BY start_us", (p.camera, lo - MAX_SEGMENT_US, hi, lo),
    ) as cur:
        spans = await cur.fetchall()
    size = BUCKETS[p.bucket]
    offset = p.utc_offset_s * 1_000_000
    first = (lo + offset) // size * size - offset  # start of the bucket holding lo
    n = -(-(hi - first) // size)  # buckets first + i * size < hi
    seg_counts, event_counts, recorded_by = [0] * n, [0] * n, [0] * n
    intervals: list[list[int]] = []
    start = 0
    end: int | None = None  # end of the interval being extended (none yet)
    for s, e in spans:
        # Clip to the range (lo <= s < hi: the query bounds start_us); plain ifs are cheaper than min/max.
        if s < lo:
            s = lo
        if e > hi:
            e = hi
        if end is not None and s - end <= GAP_TOLERANCE_US:
            if e > end:
                end = e
        else:
            if end is not None:
                intervals.append([start, end])
            start, end = s, e
        i = (s - first) // size
        seg_counts[i] += 1
        if e - first <= (i + 1) * size:  # within one bucket: the common case
            if e > s:
                recorded_by[i] += e - s
            continue
        b = first + i * size
        while b < e:  # spans bucket boundaries
            overlap = min(e, b + size) - max(s, b)
            if overlap > 0:
                recorded_by[i] += overlap
            i += 1
            b += size
    if end is not None:
        intervals.append([start, end])
    gaps, cursor = [], lo
    for s, e in intervals:
        if s > cursor:
            gaps.append([cursor, s])
        cursor = max(cursor, e)
    if cursor < hi:
        gaps.append([cursor, hi])

    longest = await longest_event_us(conn)
    async with conn.execute(
        "SELECT start_us FROM events WHERE camera = ? AND start_us >= ? AND start_us < ? AND end_us > ?",
        (p.camera, lo - longest, hi, lo),
    ) as cur:
        for (s,) in await cur.fetchall():
            i = (max(s, lo) - first) // size
            if 0 <= i < n:
                event_counts[i] += 1
    recorded = sum(e - s for s, e in intervals)
    buckets = [{"start_us": first + i * size, "segments": seg_counts[i], "events": event_counts[i],
                "recorded_us": recorded_by[i]} for i in range(n)]
    return {"camera": p.camera, "from_us": lo, "to_us": hi, "bucket": p.bucket, "intervals": intervals,
            "gaps": gaps, "recorded_us": recorded, "buckets": buckets}


async def segments_for_range(conn: aiosqlite.Connection, camera: str, from_us: int,
                             to_us: int) -> list[tuple[str, int, int]]:
    """(path, start_us, end_us) of one camera's segments overlapping a range, in time order."""
    async with conn.execute(
        "SELECT path, start_us, end_us FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ? "
        "AND end_us > ? ORDER BY start_us", (camera, from_us - MAX_SEGMENT_US, to_us, from_us),
    ) as cur:
        return [(path, s, e) for path, s, e in await cur.fetchall()]


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
