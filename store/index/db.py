"""The store's index: SQLite through aiosqlite (WAL), the default, or PostgreSQL (store/index/postgres.py) for
several stores. Schema: ``store/index/schema.sql``; versions and upgrades: ``store/index/migrations.py``."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import aiosqlite

from shared.protocol.ingest import SegmentHeader
from store.index import coverage_marks
from store.index.location import check_index_url, sqlite_path
from store.index.migrations import SEGMENT_COLUMNS_5, prepare

if TYPE_CHECKING:
    from store.playback.segment_shape import SegmentShape

# The shape columns (store/index/shapes.py), named here from the migration so that this module loads no playback.
_SHAPE_NAMES = ", ".join(name for name, _ in SEGMENT_COLUMNS_5)
_NO_SHAPE = (None,) * len(SEGMENT_COLUMNS_5)
_WRITE_LOCKS: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def transaction(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """One writer at a time on a shared connection: statements inside commit together or not at all.

    Tasks share the store's connection; without this, one task's commit would
    also commit another's half-done statements (settings without their history row).
    """
    lock = _WRITE_LOCKS.setdefault(conn, asyncio.Lock())
    async with lock:
        try:
            if dialect(conn) == "postgresql":
                # Reads inside see the transaction's writes and other stores' committed ones, as on SQLite.
                await conn.begin()  # type: ignore[attr-defined]  # PostgresConnection
            yield conn
            await conn.commit()
        except BaseException:
            # Also when the COMMIT itself fails (disk full, I/O error): the shared connection must not be
            # left inside a transaction whose rows other tasks would see, or commit by accident.
            await conn.rollback()
            raise


def dialect(conn: aiosqlite.Connection) -> str:
    """'sqlite' or 'postgresql': for the few statements that must differ (store/index/dialect.py does the rest)."""
    return getattr(conn, "dialect", "sqlite")


async def begin_exclusive(conn: aiosqlite.Connection) -> None:
    """Begin a write transaction in which no other writer changes ``segments`` until it ends."""
    if dialect(conn) == "postgresql":
        await conn.begin()  # type: ignore[attr-defined]  # PostgresConnection
        # Conflicts with INSERT/UPDATE/DELETE (and itself), not with reads: what BEGIN IMMEDIATE is on SQLite.
        await conn.execute("LOCK TABLE segments IN SHARE ROW EXCLUSIVE MODE")
    else:
        await conn.execute("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class SegmentRow:
    camera: str
    node: str
    start_us: int
    end_us: int
    frames: int
    size_bytes: int
    sha256: str
    path: str


class Index:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, where: Path | str) -> Index:
        """``where``: the SQLite file, or an index URL (``sqlite:PATH``, ``postgresql://...``: location.py)."""
        path = where if isinstance(where, Path) else sqlite_path(check_index_url(where))
        if path is None:
            return cls(await _open_postgres(str(where)))
        conn = await aiosqlite.connect(path)
        try:
            await prepare(conn, path)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    async def find_segment(self, camera: str, start_us: int) -> SegmentRow | None:
        async with self.conn.execute(
            "SELECT camera, node, start_us, end_us, frames, size_bytes, sha256, path "
            "FROM segments WHERE camera = ? AND start_us = ?", (camera, start_us)
        ) as cur:
            row = await cur.fetchone()
        return SegmentRow(*row) if row else None

    async def insert_segment(self, header: SegmentHeader, path: str, received_us: int, *,
                             before_insert: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None,
                             shape: SegmentShape | None = None) -> None:
        """Insert the segment's row, mark its hours and note its node, in one transaction. ``before_insert``
        runs first inside it; raising there writes nothing (ingest's fence, store/index/fence.py). ``shape``: read
        from the segment's own table (store/index/shapes.py); None leaves its columns NULL, for playback to fill."""
        async with transaction(self.conn) as conn:
            if before_insert is not None:
                await before_insert(conn)
            await conn.execute(
                "INSERT INTO segments (camera, node, start_us, end_us, frames, size_bytes, sha256, "
                f"codec, width_px, height_px, path, received_us, {_SHAPE_NAMES}) "
                f"VALUES (?,?,?,?,?,?,?,?,?,?,?,?{',?' * len(_NO_SHAPE)})",
                (header.camera, header.node, header.start_us, header.end_us, header.frames,
                 header.bytes, header.sha256, header.codec, header.width, header.height, path,
                 received_us, *(_NO_SHAPE if shape is None else shape.values())),
            )
            await coverage_marks.mark(conn, [(header.camera, header.start_us, header.end_us)])
            # Frames came again after a stall: a camera-stalled event of the camera still open from before this
            # segment is over, by its start at the latest (its node lost its spool mid-stall, or moved to another
            # store, and will never close it; store/ingest/events.py). It still takes its node's own close.
            await conn.execute(
                "UPDATE events SET open = 2, end_us = MAX(end_us, ?) WHERE camera = ? AND kind = 'camera-stalled' "
                "AND open = 1 AND start_us < ?", (header.start_us, header.camera, header.start_us))
            await conn.execute(
                "INSERT INTO nodes (node, first_seen_us, last_seen_us) VALUES (?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET last_seen_us = excluded.last_seen_us",
                (header.node, received_us, received_us),
            )

    @property
    def dialect(self) -> str:
        return dialect(self.conn)

    async def camera_totals(self) -> dict[str, dict]:
        async with self.conn.execute(
            "SELECT camera, COUNT(*), SUM(frames), SUM(size_bytes), MIN(start_us), MAX(end_us) "
            "FROM segments GROUP BY camera ORDER BY camera"
        ) as cur:
            rows = await cur.fetchall()
        return {cam: {"segments": n, "frames": frames, "bytes": size, "first_start_us": first,
                      "last_end_us": last} for cam, n, frames, size, first, last in rows}

    async def segments(self, camera: str) -> list[SegmentRow]:
        async with self.conn.execute(
            "SELECT camera, node, start_us, end_us, frames, size_bytes, sha256, path "
            "FROM segments WHERE camera = ? ORDER BY start_us", (camera,)
        ) as cur:
            return [SegmentRow(*r) for r in await cur.fetchall()]


async def _open_postgres(url: str) -> aiosqlite.Connection:
    """A PostgreSQL index, prepared. Typed as aiosqlite's connection: PostgresConnection offers the same
    methods with the same meaning (store/index/postgres.py), so every query module takes either."""
    from store.index.location import IndexUnavailable, redacted

    try:
        import psycopg

        from store.index.postgres import PostgresConnection
    except ImportError as exc:
        raise IndexUnavailable(f"--index postgresql://... needs psycopg ({exc}): pip install 'sht-cctv[cluster]'"
                               ) from None
    from store.index.dialect import identity_columns
    from store.index.migrations import prepare_postgres, schema_text

    try:
        conn = await PostgresConnection.connect(url, identity_columns(schema_text()))
    except (psycopg.OperationalError, TimeoutError) as exc:
        # The message may quote the URL: say it without the password.
        reason = " ".join(str(exc).split()).replace(url, redacted(url))
        raise IndexUnavailable(f"cannot reach the index at {redacted(url)}: {reason}") from None
    try:
        await prepare_postgres(conn, redacted(url))
    except BaseException:
        await conn.close()
        raise
    return cast(aiosqlite.Connection, conn)
