"""The store being moved: its SQLite index, opened so that nothing in ``ROOT`` changes, and what it holds."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from store.index import index_path
from store.index.migrations import SCHEMA_VERSION
from store.migrate import MigrateError


@dataclass
class Source:
    root: Path
    conn: aiosqlite.Connection
    identity: str  # HOST:ROOT: what the target's markers name, so a second run knows its own partial copy

    async def close(self) -> None:
        await self.conn.close()


def source_identity(root: Path) -> str:
    return f"{socket.gethostname()}:{root.resolve()}"


def index_uri(root: Path) -> str:
    """Blocking: the URI to read ROOT/index.sqlite3 through without changing anything in ``root``; ``MigrateError``
    when there is no store there."""
    if not root.is_dir():
        raise MigrateError(f"there is no store at {root} (no such directory): give --root the store's data directory "
                           "(its sht store --root)")
    index = index_path(root)
    if not index.is_file():
        raise MigrateError(f"there is no index at {index}: is --root right? (migrate moves a store whose index is "
                           "ROOT/index.sqlite3)")
    wal = index.with_name(index.name + "-wal")
    # A store stopped cleanly leaves no WAL: the file alone is the index, and immutable=1 reads it without making
    # -wal and -shm files beside it. A store that was killed left a WAL holding its last commits: read through it.
    mode = "immutable=1" if not wal.exists() or wal.stat().st_size == 0 else "mode=ro"
    return f"{index.resolve().as_uri()}?{mode}"


async def open_source(root: Path) -> Source:
    """The store at ``root`` (its lock already held by the caller), its index read-only; ``MigrateError`` when
    there is none or its schema is not this sht's."""
    uri = await asyncio.to_thread(index_uri, root)
    index = index_path(root)
    conn = await aiosqlite.connect(uri, uri=True)
    try:
        async with conn.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
    except Exception as exc:
        await conn.close()
        raise MigrateError(f"cannot read the index at {index} ({exc}): run `sht store check --root {root}`") from None
    version = None if row is None else int(row[0])
    if version != SCHEMA_VERSION:
        await conn.close()
        if version is not None and version > SCHEMA_VERSION:
            raise MigrateError(f"the index at {index} has schema version {version}, newer than this sht's "
                               f"{SCHEMA_VERSION}: migrate with the sht that wrote it (pip install -U sht-cctv)")
        raise MigrateError(f"the index at {index} has schema version {version}, this sht's is {SCHEMA_VERSION}: "
                           f"start the store on it once with this sht (`sht store --root {root}` upgrades it), stop "
                           "it, then migrate")
    return Source(root, conn, source_identity(root))


async def columns(conn: aiosqlite.Connection, table: str) -> list[str]:
    """A SQLite table's columns, in order (by name: an upgraded index has them in the same order as a new one)."""
    async with conn.execute(f"PRAGMA table_info({table})") as cur:
        return [str(row[1]) for row in await cur.fetchall()]


async def count(conn: Any, table: str) -> int:
    async with conn.execute(f"SELECT COUNT(*) FROM {table}") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def segment_totals(conn: aiosqlite.Connection) -> tuple[int, int]:
    """(segments, bytes) the source holds."""
    async with conn.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM segments") as cur:
        row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
