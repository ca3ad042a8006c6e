"""Each segment's *shape* in its index row: the ``play_*`` columns of ``segments`` (schema.sql; what each means and
why playback wants them: store/playback/segment_shape.py).

A shape is derived from the segment's own sample table, never trusted over it. It is read where the bytes are in
hand anyway (ingest, ``check --repair``, ``rebuild-index``); a row without one (NULL: indexed before schema version
5, or a table playback cannot read) is filled lazily by playback with ``fill_shapes``. A segment whose table cannot
be read is still stored and indexed: footage is never refused or lost for want of a shape.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import aiosqlite

from store.index import coverage_marks
from store.index.db import transaction
from store.playback.segment_shape import SHAPE_COLUMNS, SegmentShape, shape_of
from store.playback.segment_tables import read_table

log = logging.getLogger(__name__)

SHAPE_SELECT = ", ".join(SHAPE_COLUMNS)  # for a SELECT: store/playback/segment_shape.py ``shape_from_row`` reads it
_FILL_SQL = (f"UPDATE segments SET {', '.join(f'{c} = ?' for c in SHAPE_COLUMNS)} "
             "WHERE camera = ? AND start_us = ? AND play_samples IS NULL")


def read_shape(f: BinaryIO, size: int, name: str) -> SegmentShape | None:
    """Blocking (run it in a worker thread): the shape of the MP4 in ``f`` (``size`` bytes), or None, said in one
    log line, when its table cannot be read (the row keeps NULL; playback reads such a table itself)."""
    try:
        return shape_of(read_table(f, size, name))
    except (ValueError, struct.error) as exc:  # TableError is a ValueError
        log.info("%s: no shape in its index row (%s); playback reads its table when it needs it", name, exc)
    except Exception:  # a bug in reading a table must not cost the footage its row
        log.warning("%s: reading its table for its index row failed; its shape stays NULL", name, exc_info=True)
    return None


def shape_of_bytes(payload: bytes | memoryview, name: str) -> SegmentShape | None:
    """Blocking: ``read_shape`` of a segment's bytes in memory (ingest's payload)."""
    return read_shape(io.BytesIO(payload), len(payload), name)


def shape_of_path(path: Path, name: str) -> SegmentShape | None:
    """Blocking: ``read_shape`` of a segment's file (reads its box headers and its ``moov`` only)."""
    try:
        with open(path, "rb") as f:
            return read_shape(f, path.stat().st_size, name)
    except OSError as exc:
        log.info("%s: no shape in its index row (%s)", name, exc)
        return None


async def fill_shapes(conn: aiosqlite.Connection, items: Sequence[tuple[str, int, SegmentShape]]) -> int:
    """Write the shapes of segments (camera, start_us, shape) whose rows have none yet, in one transaction, on
    SQLite or PostgreSQL; a row that has one keeps it, a row that is gone (retention) is no error. Returns how many
    rows took a shape. The hours they start in are marked dirty."""
    if not items:
        return 0
    async with transaction(conn) as c:
        cur = await c.executemany(_FILL_SQL, [(*shape.values(), camera, start_us)
                                              for camera, start_us, shape in items])
        # Their hours' playback summaries (coverage_hours.playback) were made without these shapes: summarised
        # again, so /recordings sizes those hours from summaries next time (store/playback/parts.py).
        await coverage_marks.mark(c, [(camera, start_us, start_us + 1) for camera, start_us, _ in items])
        return max(0, cur.rowcount)


async def clear_shape(conn: aiosqlite.Connection, camera: str, start_us: int) -> None:
    """Forget a segment's shape (NULL: the next layout reads its table and keeps the shape it finds), and mark
    its hour's playback summary stale, in one transaction."""
    async with transaction(conn) as c:
        await c.execute(f"UPDATE segments SET {', '.join(f'{col} = NULL' for col in SHAPE_COLUMNS)} "
                        "WHERE camera = ? AND start_us = ?", (camera, start_us))
        await coverage_marks.mark(c, [(camera, start_us, start_us + 1)])
