"""``coverage_hours``: one summary row per camera and UTC hour, for fast timelines (store/index/timeline.py).

Each row also keeps the playback part of the segments that start in its hour (``playback``,
store/playback/parts.py): what sizes a ``/recordings`` file without a pass over a day of rows.

The rule that keeps them true: every change to ``segments`` marks the hours it touches
dirty in the same transaction (store/index/coverage_marks.py), and a summary is only trusted while clean.
``CoverageTask`` recomputes dirty hours that have ended, on a connection of its own,
each batch inside one write transaction (BEGIN IMMEDIATE), so no segment can change
between reading an hour and writing its summary. A timeline reads a dirty hour from its
segments, so a stale summary is never used, only a slower path.

An hour has a row while any segment overlaps it; a recomputed hour with none loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import aiosqlite

from shared.clock import now_us
from store.index import index_path
from store.index.db import begin_exclusive
from store.index.timeline import HOUR_US, spans_between, summarise_hour
from store.maintenance.lease import Lease, SoleStore
from store.playback.parts import part_of, to_json
from store.playback.segment_shape import SHAPE_COLUMNS, shape_from_row

log = logging.getLogger(__name__)

REFRESH_BATCH = 20  # hours per write transaction: the ingest waits at most for one batch (a few ms) ...
REFRESH_ROWS = 2000  # ... or fewer once this many segments were read (a playback part is ~5 µs a segment)
REFRESH_PAUSE_S = 0.05
SETTLE_US = 60_000_000  # an hour is summarised once it ended this long ago (later ones are still being written)

async def refresh(conn: aiosqlite.Connection, before_us: int, limit: int = REFRESH_BATCH) -> int:
    """Recompute up to ``limit`` dirty hours that end before ``before_us``; returns how many."""
    await begin_exclusive(conn)  # no segment changes between reading an hour and writing it
    try:
        async with conn.execute(
            "SELECT camera, hour_us FROM coverage_hours WHERE dirty = 1 AND hour_us + ? <= ? LIMIT ?",
            (HOUR_US, before_us, limit),
        ) as cur:
            hours = [(str(c), int(h)) for c, h in await cur.fetchall()]
        done, rows_read = 0, 0
        for camera, hour in hours:
            if rows_read >= REFRESH_ROWS:  # the rest in the next transaction: ingest waits for one batch at most
                break
            done += 1
            segments, recorded, intervals = summarise_hour(await spans_between(conn, camera, hour, hour + HOUR_US),
                                                           hour)
            rows_read += segments
            if segments == 0 and not intervals:
                await conn.execute("DELETE FROM coverage_hours WHERE camera = ? AND hour_us = ?", (camera, hour))
            else:
                playback = to_json(part_of(await _shaped_rows(conn, camera, hour), hour))
                await conn.execute(
                    "UPDATE coverage_hours SET segments = ?, recorded_us = ?, intervals = ?, playback = ?, dirty = 0 "
                    "WHERE camera = ? AND hour_us = ?",
                    (segments, recorded, json.dumps(intervals, separators=(",", ":")), playback, camera, hour))
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return done


async def _shaped_rows(conn: aiosqlite.Connection, camera: str, hour: int) -> list[tuple[int, int, Any]]:
    """(start_us, size_bytes, shape) of the camera's segments that start in the hour, in start order."""
    async with conn.execute(
        f"SELECT start_us, size_bytes, {', '.join(SHAPE_COLUMNS)} FROM segments WHERE camera = ? AND start_us >= ? "
        "AND start_us < ? ORDER BY start_us", (camera, hour, hour + HOUR_US),
    ) as cur:
        return [(int(start), int(size), shape_from_row(shape)) for start, size, *shape in await cur.fetchall()]


async def refresh_all(conn: aiosqlite.Connection, before_us: int, pause_s: float = 0.0) -> int:
    """Every settled dirty hour, batch by batch; ``pause_s`` between batches lets other writers in."""
    total = 0
    while n := await refresh(conn, before_us):
        total += n
        if pause_s:
            await asyncio.sleep(pause_s)
    return total


class CoverageTask:
    """Keeps ``coverage_hours`` current: every ``interval_s``, all dirty hours that have settled."""

    def __init__(self, root: Path, *, interval_s: float = 30.0, index: str | None = None,
                 lease: Lease | None = None) -> None:
        """``index``: the index URL (``sht store --index``; default ROOT/index.sqlite3). ``lease``: summaries are
        computed only while it is held (several stores on one PostgreSQL index; default: always)."""
        self.root, self.interval_s, self.index_url = root, interval_s, index
        self.lease: Lease = lease or SoleStore()
        self.refreshed_total = 0
        self._index: Any = None  # store.index.db.Index (imported late: store.index.db uses this module)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from store.index.db import Index

        self._index = await Index.open(self.index_url or index_path(self.root))
        self._task = asyncio.create_task(self._run(), name="coverage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._index is not None:
            await self._index.close()
            self._index = None

    async def refresh_now(self) -> int:
        assert self._index is not None, "start() first"
        # Paused between batches: after an upgrade or a rebuild every hour is dirty (72,000 at 100 cameras
        # and 30 days), and back-to-back write transactions would make ingest wait for the lock.
        n = await refresh_all(self._index.conn, now_us() - SETTLE_US, pause_s=REFRESH_PAUSE_S)
        self.refreshed_total += n
        return n

    async def _run(self) -> None:
        while True:
            try:
                # Another store sharing the index summarises meanwhile; two at once would only repeat work.
                n = await self.refresh_now() if self.lease.held else 0
                if n:
                    log.debug("coverage: %d camera-hours summarised", n)
            except Exception:
                log.exception("coverage summaries failed; timelines read segments meanwhile; retrying in %.0f s",
                              self.interval_s)
            await asyncio.sleep(self.interval_s)
