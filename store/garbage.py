"""Deleting the files of segments whose rows are gone: the ``garbage`` table's collector.

Retention moves a segment's row from ``segments`` to ``garbage`` in one transaction and
returns; the files go afterwards, here. So a sweep's cost is SQLite's, not the file
system's (an unlink of a real file is 10-100 µs on ext4, a day at 100 cameras is 864,000
files), and a crash between the two leaves a garbage row, which the next collection
finishes, never a forgotten file. A garbage row is deleted only after its file is gone.

A segment can come back after its row went to garbage (a node resending it): its file is
written at the same path. So a file is unlinked only while no ``segments`` row has its
identity, checked under the Ingestor's per-segment locks (docs/storage.md, "Retention").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from store.files import safe_relpath, unlink_segments
from store.ingest import KeyedLocks

BATCH_ROWS = 10_000


@dataclass
class CollectReport:
    files: int = 0  # garbage rows whose files were deleted (or already gone)
    bytes: int = 0
    revived: int = 0  # garbage rows dropped because the segment was stored again: its file stays
    errors: int = 0  # files that could not be removed (their rows stay for the next collection)
    duration_s: float = 0.0


async def pending(conn: aiosqlite.Connection) -> tuple[int, int]:
    """(files, bytes) waiting to be deleted."""
    async with conn.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM garbage") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def pending_paths(conn: aiosqlite.Connection) -> set[str]:
    async with conn.execute("SELECT path FROM garbage") as cur:
        return {str(p) for (p,) in await cur.fetchall()}


async def collect(conn: aiosqlite.Connection, root: Path, *, locks: KeyedLocks | None = None,
                  batch_rows: int = BATCH_ROWS) -> CollectReport:
    """Delete every garbage row's file, then the row; batch by batch, oldest first.

    ``conn`` should be a connection of its own (each batch commits). ``locks``: the running
    store's Ingestor locks; without them (an admin command) the store must be stopped.
    """
    started = time.monotonic()
    report = CollectReport()
    after = 0
    while True:
        async with conn.execute("SELECT id, camera, start_us FROM garbage WHERE id > ? ORDER BY id LIMIT ?",
                                (after, batch_rows)) as cur:
            keys = [(int(i), str(c), int(s)) for i, c, s in await cur.fetchall()]
        if not keys:
            break
        after = keys[-1][0]
        async with contextlib.AsyncExitStack() as held:
            if locks is not None:
                for _, camera, start in keys:
                    # The Ingestor's key for a segment: SegmentHeader.segment_id.
                    await held.enter_async_context(locks.hold(f"{camera}-{start}"))
            # Under the locks, so no resend of these segments can be between file and row now.
            marks = ",".join("?" * len(keys))
            async with conn.execute(
                f"SELECT g.id, g.camera, g.path, g.size_bytes, EXISTS (SELECT 1 FROM segments s WHERE "
                f"s.camera = g.camera AND s.start_us = g.start_us) FROM garbage g WHERE g.id IN ({marks})",
                [k[0] for k in keys]) as cur:
                rows = [(int(i), str(c), str(p), int(n), bool(live)) for i, c, p, n, live in await cur.fetchall()]
            doomed = [r for r in rows if not r[4]]
            failed = await _unlink(root, doomed)
            done = [r[0] for r in rows if r[0] not in failed]
            if done:
                await conn.execute(f"DELETE FROM garbage WHERE id IN ({','.join('?' * len(done))})", done)
                await conn.commit()
        report.revived += len(rows) - len(doomed)
        report.errors += len(failed)
        for row_id, _, _, size, live in rows:
            if not live and row_id not in failed:
                report.files += 1
                report.bytes += size
    report.duration_s = time.monotonic() - started
    return report


async def _unlink(root: Path, rows: list[tuple[int, str, str, int, bool]]) -> set[int]:
    """Unlink on two threads (the syscalls release the GIL), split by camera so each directory has
    one thread; returns the ids whose files are still there."""
    cameras = sorted({r[1] for r in rows})
    first = set(cameras[::2])
    halves = [[r for r in rows if r[1] in first], [r for r in rows if r[1] not in first]]
    failures = await asyncio.gather(*(asyncio.to_thread(unlink_segments, root, [r[2] for r in half])
                                      for half in halves if half))
    if not any(failures):
        return set()
    # Rare: find which ones (unlink_segments logged each); they stay in garbage for next time. A path
    # outside ROOT/segments is never deleted nor retried: its row goes (it was logged).
    return await asyncio.to_thread(lambda: {r[0] for r in rows if safe_relpath(r[2]) and (root / r[2]).exists()})
