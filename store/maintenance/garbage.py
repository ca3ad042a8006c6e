"""Deleting the files of segments whose rows retention removed: the ``garbage`` table's collector.

Retention deletes a batch of rows and, in the same transaction, records per camera and UTC
hour the range of start times it deleted (a ``garbage`` row per camera-hour and batch, not
per segment: a row per file doubled the index writes of a big prune). The files go afterwards,
here. So a sweep costs SQLite's time, not the file system's (an unlink that frees a file's
blocks is tens of µs; a day at 100 cameras is 864,000 files), and a crash in between
leaves garbage rows that the next collection finishes, never a forgotten file. A garbage
row is deleted only after every file in its range is gone and its directory synced; a range
that cannot be finished stays, marked failed, and does not hold up the others.

Which files: those in the store's own layout (``store.segments.segment_name``, the only
names rows ever have) of that camera, with a start time inside a range, and no
``segments`` row. A range can hold segments that stay (a locked event kept them; a node
sent one again after its row went): the row check, made under the Ingestor's per-segment
locks and, on an index several stores share, the hour's fence (store/index/fence.py), keeps them
(docs/storage.md, "Retention").

The segments go through the store's ``SegmentStore`` (store/segments): files are unlinked and their
directories fsynced; S3 objects go by ``DeleteObjects``, up to 1000 a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from store.index.db import transaction
from store.index.fence import removal_fence
from store.ingest.writer import KeyedLocks
from store.segments import SegmentStore
from store.segments.files import FileSegments

log = logging.getLogger(__name__)


@dataclass
class CollectReport:
    files: int = 0  # files deleted
    bytes: int = 0  # what the rows of the finished ranges said their files held
    kept: int = 0  # files inside the ranges that still have a row (locked footage, or sent again)
    errors: int = 0  # files or directories that could not be handled (their ranges stay, marked failed)
    duration_s: float = 0.0


class Ranges:
    """One camera's garbage ranges of start times, merged, for membership tests."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted(spans):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.starts = [lo for lo, _ in merged]
        self.ends = [hi for _, hi in merged]

    def __contains__(self, start_us: int) -> bool:
        i = bisect_right(self.starts, start_us) - 1
        return i >= 0 and start_us <= self.ends[i]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self.starts, self.ends, strict=True))


async def pending(conn: aiosqlite.Connection, *, failed: bool = True) -> tuple[int, int]:
    """(segments, bytes) whose files are still to be deleted (as their rows said); ``failed=False`` leaves
    out ranges a collection could not finish (their bytes may never come free)."""
    where = "" if failed else " WHERE failed = 0"
    sql = f"SELECT COALESCE(SUM(segments), 0), COALESCE(SUM(size_bytes), 0) FROM garbage{where}"
    async with conn.execute(sql) as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def pending_ranges(conn: aiosqlite.Connection) -> dict[str, Ranges]:
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    async with conn.execute("SELECT camera, from_us, to_us FROM garbage") as cur:
        for camera, lo, hi in await cur.fetchall():
            spans[str(camera)].append((int(lo), int(hi)))
    return {camera: Ranges(s) for camera, s in spans.items()}


async def collect(conn: aiosqlite.Connection, root: Path, *, locks: KeyedLocks | None = None,
                  segments: SegmentStore | None = None) -> CollectReport:
    """Delete the files of every garbage range, then the ranges.

    ``conn`` should be a connection of its own. ``locks``: the running store's Ingestor locks;
    without them (an admin command) the store on a SQLite index must be stopped (ROOT/store.lock); stores
    sharing a PostgreSQL index may run, the hour fence keeps them apart. ``segments``: where they are
    (default: files under ROOT/segments).
    """
    store: SegmentStore = segments if segments is not None else FileSegments(root)
    started = time.monotonic()
    report = CollectReport()
    by_camera: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    async with conn.execute("SELECT id, camera, from_us, to_us, size_bytes FROM garbage") as cur:
        for row_id, camera, lo, hi, size in await cur.fetchall():
            by_camera[str(camera)].append((int(row_id), int(lo), int(hi), int(size)))
    cameras = sorted(by_camera)

    async def worker(names: list[str]) -> None:
        for camera in names:
            await _collect_camera(conn, store, camera, by_camera[camera], locks, report)

    # Two cameras at a time: unlinks release the GIL, and each directory is emptied by one thread. A task
    # group: if one fails, the other is stopped too, not left running on the connection unsupervised.
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(worker(cameras[::2]))
            group.create_task(worker(cameras[1::2]))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    report.duration_s = time.monotonic() - started
    return report


async def _collect_camera(conn: aiosqlite.Connection, store: SegmentStore, camera: str,
                          entries: list[tuple[int, int, int, int]], locks: KeyedLocks | None,
                          report: CollectReport) -> None:
    """Each hour directory once; a merged range whose directories could not all be handled keeps its rows
    (marked failed) while the others go, in one transaction for the camera."""
    ranges = Ranges([(lo, hi) for _, lo, hi, _ in entries])
    spans = list(ranges)
    directories = await store.hours_between(camera, spans)
    failed: set[int] = set()  # indexes into spans
    for directory, owners in directories.items():
        try:
            names = await store.starts_in_hour(directory)
        except OSError as exc:
            log.error("cannot list %s to delete what retention removed (retried at the next collection): %s",
                      directory, exc)
            failed.update(owners)
            report.errors += 1
            continue
        starts = [start for start in names if start in ranges]
        if not starts:
            continue
        async with contextlib.AsyncExitStack() as held:
            if locks is not None:
                for start in starts:
                    # The Ingestor's key for a segment: SegmentHeader.segment_id.
                    await held.enter_async_context(locks.hold(f"{camera}-{start}"))
            # And the hour's fence: no store sharing a PostgreSQL index commits a row in this hour until the
            # deletions are done, and one that stored a segment here before checks it is still there before its
            # commit (store/index/fence.py). Nothing on SQLite, whose one store holds the locks above.
            await held.enter_async_context(removal_fence(conn, directory))
            # Under the locks, so no resend of these segments can be between its file and its row now.
            async with conn.execute("SELECT start_us FROM segments WHERE camera = ? AND start_us BETWEEN ? AND ?",
                                    (camera, min(starts), max(starts))) as cur:
                live = {int(s) for (s,) in await cur.fetchall()}
            doomed = [f"{directory}/{s}.mp4" for s in starts if s not in live]
            errors = await store.delete_many(doomed)
        report.kept += len(starts) - len(doomed)
        report.files += len(doomed) - errors
        if errors:  # logged by delete_many; the ranges stay, to be tried again
            failed.update(owners)
            report.errors += errors
    # The unlinks reach the disk before the rows that list them go: else a power cut could keep the files
    # and lose the rows, leaving files nobody deletes (and check --repair would index them again).
    await store.sync_deleted(list(directories))
    done: list[int] = []
    stuck: list[int] = []
    for row_id, lo, _, size in entries:
        k = bisect_right(ranges.starts, lo) - 1  # the merged range holding this row's range
        if k in failed:
            stuck.append(row_id)
        else:
            done.append(row_id)
            report.bytes += size
    async with transaction(conn):
        await _execute_chunked(conn, "DELETE FROM garbage WHERE id IN ({})", done)
        await _execute_chunked(conn, "UPDATE garbage SET failed = 1 WHERE id IN ({})", stuck)


async def _execute_chunked(conn: aiosqlite.Connection, sql: str, ids: list[int], chunk: int = 10_000) -> None:
    """``sql`` with an IN list, in pieces: SQLite takes at most 32,766 parameters per statement."""
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        await conn.execute(sql.format(",".join("?" * len(part))), part)
