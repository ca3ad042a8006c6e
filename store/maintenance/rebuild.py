"""``sht store rebuild-index`` and ``sht store backup``.

rebuild-index: a fresh index from the segment files alone, built beside the old one and
swapped in atomically; the old one is kept as ``index.sqlite3.bak``. Events, settings and
nodes cannot come from the files, so they are carried over from the old index when it
is still readable. Run it with the store stopped (``store/admin/commands.py`` takes the lock).

backup: a consistent copy of the live index through SQLite's online backup API; safe
while the store runs, since WAL readers never block its writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from shared.fsutil import TEMP_MARK, fsync_dir
from store.index import INDEX_FILE
from store.index.db import Index
from store.index.migrations import SCHEMA_VERSION
from store.maintenance.check import describe_segment, insert_row
from store.maintenance.garbage import collect
from store.media.files import is_temporary
from store.segments import SegmentStore, row_path
from store.segments.files import FileSegments

BATCH_ROWS = 2000
# What files cannot tell. event_labels and event_snapshots exist from version 3 on; events keep their ids,
# which those two name.
CARRIED_TABLES = ("nodes", "events", "event_labels", "event_snapshots", "settings", "settings_history")
# Versions whose carried tables can be copied: their columns are today's or a subset (version 2's events lacks
# version 3's columns, which take their defaults: closed, never analysed; version 3's nodes and settings lack
# version 4's, which stay NULL: no store has written them). Version 4 differs from 5 only in segments, which are
# never carried: the rebuild reads each file, its shape too.
CARRIED_FROM_VERSIONS = (1, 2, 3, 4, SCHEMA_VERSION)


@dataclass
class RebuildReport:
    indexed: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # files that could not be indexed, left in place
    carried: dict[str, int] = field(default_factory=dict)  # table -> rows copied from the old index
    notes: list[str] = field(default_factory=list)
    garbage_collected: int = 0  # files the old index was still deleting, deleted before the walk
    backup: Path | None = None
    duration_s: float = 0.0


def _sidecars(db: Path) -> list[Path]:
    return [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _remove_db(db: Path) -> None:
    for p in (db, *_sidecars(db)):
        p.unlink(missing_ok=True)


async def rebuild_index(root: Path, segments: SegmentStore | None = None) -> RebuildReport:
    """Index every segment (files under ROOT/segments, or ``segments``) into a new file and swap it in."""
    store: SegmentStore = segments if segments is not None else FileSegments(root)
    started = time.monotonic()
    report = RebuildReport()
    old = root / INDEX_FILE
    new = root / f"{INDEX_FILE}.rebuild"
    await asyncio.to_thread(_remove_db, new)  # a rebuild that crashed earlier
    if old.exists():
        await _collect_old_garbage(root, old, report, store)
    index = await Index.open(new)
    try:
        entries = sorted([entry async for entry in store.list_all()
                          if entry.name.endswith(".mp4") and not is_temporary(entry.name)], key=lambda e: e.name)
        for i, entry in enumerate(entries, 1):
            try:
                row = await asyncio.to_thread(describe_segment, store, entry)
            except (ValueError, FileNotFoundError) as exc:
                report.skipped.append(f"{row_path(entry.name)}: {exc}")
                continue
            await insert_row(index.conn, row)
            report.indexed += 1
            report.bytes += int(row["size_bytes"])
            if i % BATCH_ROWS == 0:
                await index.conn.commit()
        await index.conn.commit()
        if old.exists():
            await _carry_over(index, old, report)
    finally:
        await index.close()  # the last connection: SQLite checkpoints and removes the -wal
    report.backup = await asyncio.to_thread(_swap_in, new, old)
    report.duration_s = time.monotonic() - started
    return report


async def _collect_old_garbage(root: Path, old: Path, report: RebuildReport, segments: SegmentStore) -> None:
    """Finish the old index's pending file deletions first, or the rebuild would index them again."""
    try:
        conn = await aiosqlite.connect(old)
    except sqlite3.DatabaseError as exc:
        report.notes.append(f"old index unreadable ({exc}): files it was still deleting are indexed again")
        return
    try:
        async with conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'garbage'") as cur:
            if await cur.fetchone() is None:
                return  # an index from before the garbage table: retention deleted its files itself
        collected = await collect(conn, root, segments=segments)
        report.garbage_collected = collected.files
        if collected.errors:
            report.notes.append(f"{collected.errors} files the old index was deleting could not be deleted (see "
                                "the log): they are indexed again; `sht store prune` deletes them once expired")
    except sqlite3.DatabaseError as exc:
        report.notes.append(f"could not read the old index's pending deletions ({exc}): "
                            "files it was still deleting are indexed again")
    finally:
        await conn.close()


async def _carry_over(index: Index, old: Path, report: RebuildReport) -> None:
    conn = index.conn
    try:
        await conn.execute("ATTACH DATABASE ? AS old", (str(old),))
    except sqlite3.DatabaseError as exc:
        report.notes.append(f"old index unreadable ({exc}): events, settings and nodes start empty")
        return
    try:
        async with conn.execute("SELECT version FROM old.schema_version") as cur:
            version = await cur.fetchone()
        if version is None or version[0] not in CARRIED_FROM_VERSIONS:
            report.notes.append(f"old index has schema version {version and version[0]}, not {SCHEMA_VERSION}: "
                                "events, settings and nodes start empty")
            return
        for table in CARRIED_TABLES:
            columns = await _shared_columns(conn, table)
            if columns is None:
                continue  # the old index is from before this table
            try:
                cur = await conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM old.{table}")
                report.carried[table] = cur.rowcount
                await conn.commit()
            except sqlite3.DatabaseError as exc:
                await conn.rollback()
                report.notes.append(f"could not carry over {table} from the old index: {exc}")
    except sqlite3.DatabaseError as exc:
        report.notes.append(f"old index unreadable ({exc}): events, settings and nodes start empty")
    finally:
        await conn.execute("DETACH DATABASE old")


async def _shared_columns(conn: aiosqlite.Connection, table: str) -> str | None:
    """The columns ``table`` has both in the new index and in the attached old one, by name (an upgraded
    index may order them differently), or None when the old index lacks the table."""
    async with conn.execute(f"PRAGMA old.table_info({table})") as cur:
        old_columns = {row[1] for row in await cur.fetchall()}
    if not old_columns:
        return None
    async with conn.execute(f"PRAGMA main.table_info({table})") as cur:
        return ", ".join(row[1] for row in await cur.fetchall() if row[1] in old_columns)


def _swap_in(new: Path, old: Path) -> Path | None:
    """Make ``new`` the index; keep ``old`` as .bak. There is no moment without an index file."""
    for p in _sidecars(new):
        if p.exists():
            raise RuntimeError(f"{p} is still there after closing the new index; not swapping it in")
    bak = old.with_name(old.name + ".bak")
    if not old.exists():
        os.replace(new, old)
        fsync_dir(old.parent)
        return None
    _remove_db(bak)
    old_wal = old.with_name(old.name + "-wal")
    with contextlib.suppress(sqlite3.DatabaseError):
        # Fold a crash's WAL into the old file, so the .bak is whole by itself.
        with contextlib.closing(sqlite3.connect(old)) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if old_wal.exists() and old_wal.stat().st_size > 0:
        # Could not fold it in: it belongs with the .bak, and must never meet the new file.
        os.replace(old_wal, bak.with_name(bak.name + "-wal"))
    for p in _sidecars(old):
        p.unlink(missing_ok=True)
    try:
        os.link(old, bak)  # the old file stays in place until the atomic replace below
    except OSError:
        shutil.copy2(old, bak)  # file systems without hard links
    os.replace(new, old)
    fsync_dir(old.parent)
    return bak


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    segments: int
    duration_s: float


def backup_index(root: Path, output: Path) -> BackupResult:
    """Copy ROOT/index.sqlite3 to ``output`` consistently, even while the store writes to it."""
    started = time.monotonic()
    src_path = root / INDEX_FILE
    if not src_path.is_file():
        raise FileNotFoundError(f"no index at {src_path}")
    if output.resolve() in (src_path.resolve(), *(p.resolve() for p in _sidecars(src_path))):
        raise ValueError(f"{output} is the index itself; write the backup somewhere else")
    temp = output.with_name(f"{output.name}{TEMP_MARK}{secrets.token_hex(4)}")
    try:
        with contextlib.closing(sqlite3.connect(src_path, timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(temp)) as dst:
            # One step (pages=-1): a single read transaction, so one snapshot, whatever the writer does.
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # the copy is one self-contained file
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy fails quick_check: {check}")
            segments = dst.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, output)
        fsync_dir(output.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return BackupResult(output, output.stat().st_size, int(segments), time.monotonic() - started)
