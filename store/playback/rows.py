"""The index rows of a ``/recordings`` range: the segments that may hold a frame of it, with their shapes."""

from __future__ import annotations

from typing import Any

from store.index.timeline import MAX_SEGMENT_US
from store.playback.segment_shape import SHAPE_COLUMNS, SegmentShape, shape_from_row

WHERE = "camera = ? AND start_us >= ? AND start_us < ? AND end_us > ?"  # args: where_args(...)
Rows = list[tuple[str, int, int, SegmentShape | None]]  # (path, start_us, size_bytes, shape)


def where_args(camera: str, from_us: int, to_us: int) -> tuple[Any, ...]:
    return camera, from_us - MAX_SEGMENT_US, to_us, from_us


async def rows_of(conn: Any, camera: str, from_us: int, to_us: int, order: str = "ORDER BY start_us") -> Rows:
    """(path, start_us, size_bytes, shape) of the camera's segments overlapping the range, in ``order``."""
    async with conn.execute(
        f"SELECT path, start_us, size_bytes, {', '.join(SHAPE_COLUMNS)} FROM segments WHERE {WHERE} {order}",
        where_args(camera, from_us, to_us),
    ) as cur:
        return [(path, int(s), int(size), shape_from_row(shape)) for path, s, size, *shape in await cur.fetchall()]
