"""Retention: delete the oldest footage when it is too old or the store is too full.

Rules (docs/storage.md, "Retention"):

- age: a segment whose ``end_us`` is older than its camera's limit goes (the
  ``retention_days`` runtime setting overrides ``max_age_us`` per camera);
- size: while all segments together exceed ``max_bytes``, the oldest go, across cameras;
- free space: while the file system has less than the min-free floor, the oldest go (only where the
  segments are on a local disk: deleting S3 objects frees nothing here);
- never a segment overlapping a locked event (same camera, time overlap);
- per batch, one transaction: the rows move from ``segments`` to ``garbage``; their files
  are deleted afterwards by ``store.maintenance.garbage.collect`` (the running store right after each
  sweep, ``sht store prune`` before it exits). A crash in between leaves garbage rows that
  the next collection finishes, never a row pointing at a missing file nor a forgotten file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import aiosqlite

from shared.clock import iso_utc, now_us
from shared.settings import RETENTION_DAYS, SETTINGS, SettingError
from store.index import coverage_marks, index_path
from store.index.db import Index, transaction
from store.index.timeline import HOUR_US
from store.ingest.writer import KeyedLocks
from store.maintenance import garbage
from store.maintenance.lease import Lease, SoleStore
from store.segments import SegmentStore
from store.segments.files import FileSegments

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
BATCH_ROWS = 10_000  # rows fetched, deleted and committed at a time: bounded memory, few fsyncs
_COLUMNS = "id, camera, start_us, end_us, size_bytes"


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_us: int | None = 30 * DAY_US  # None: no age limit (per-camera overrides still apply)
    max_bytes: int | None = None  # total of all segments' sizes
    min_free_bytes: int | None = None  # floor of free space on the store's file system
    min_free_percent: float | None = None  # the same floor, as a percentage of the file system

    def min_free_for(self, disk_total: int) -> int | None:
        """The free-space floor in bytes on a file system of ``disk_total`` bytes (the larger of both)."""
        floors = [self.min_free_bytes or 0]
        if self.min_free_percent is not None:
            floors.append(math.ceil(disk_total * self.min_free_percent / 100))
        if self.min_free_bytes is None and self.min_free_percent is None:
            return None
        return max(floors)


@dataclass
class StoreUsage:
    """Running totals of the index, so limits never need a ``SUM`` over the whole table."""

    total_bytes: int = 0
    segments: int = 0

    @classmethod
    async def load(cls, index: Index) -> StoreUsage:
        async with index.conn.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM segments") as cur:
            row = await cur.fetchone()
        assert row is not None
        return cls(total_bytes=int(row[1]), segments=int(row[0]))

    def note_ingested(self, size: int) -> None:
        self.total_bytes += size
        self.segments += 1

    def note_deleted(self, size: int, count: int) -> None:
        self.total_bytes -= size
        self.segments -= count


@dataclass
class CameraSweep:
    segments: int = 0
    bytes: int = 0
    oldest_remaining_us: int | None = None


@dataclass
class SweepReport:
    dry_run: bool
    deleted: int = 0
    bytes_freed: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: {"age": 0, "size": 0, "free": 0})
    by_camera: dict[str, CameraSweep] = field(default_factory=dict)
    oldest_remaining_us: int | None = None
    skipped_locked: int = 0  # distinct segments kept only because a locked event overlaps them
    unmet_bytes: int = 0  # space still wanted after the sweep (all that is left is locked)
    snapshots_deleted: int = 0  # events' snapshots whose footage is gone
    duration_s: float = 0.0


_Row = tuple[int, str, int, int, int]  # _COLUMNS, as SQLite returns them
_ID: Final = 0  # (Final: mypy then knows each column's type)
_CAMERA: Final = 1
_START: Final = 2
_END: Final = 3
_SIZE: Final = 4


async def open_index(where: Path | str) -> Index:
    """The index on a connection of retention's own, set up for deleting many rows at a time (``where``: the
    SQLite file or an index URL; the PRAGMAs below are SQLite's and do nothing on PostgreSQL)."""
    index = await Index.open(where)
    # A day at 100 cameras is 864,000 rows. A 64 MiB page cache and a checkpoint every ~40 MiB of WAL
    # (not 4) halve what a big prune writes: the same index pages are no longer copied back batch by batch.
    await index.conn.execute("PRAGMA cache_size = -65536")
    await index.conn.execute("PRAGMA wal_autocheckpoint = 10000")
    return index


def _disk_usage(root: Path) -> tuple[int, int]:
    """(total, free) bytes of the file system holding ``root``; tests replace this."""
    usage = shutil.disk_usage(root)
    return usage.total, usage.free


async def sweep(index: Index, root: Path, policy: RetentionPolicy, now_us: int, dry_run: bool = False, *,
                usage: StoreUsage | None = None, segments: SegmentStore | None = None) -> SweepReport:
    """Apply ``policy`` once: rows move to ``garbage``; ``garbage.collect`` deletes their files after.
    ``usage`` (kept up to date by the caller) saves a ``SUM``. ``segments``: where the files are (default:
    files under ROOT/segments); the free-space floor applies only where that is a local disk.

    ``index`` should be a connection of its own: a batch that fails is rolled back."""
    started = time.monotonic()
    report = SweepReport(dry_run=dry_run)
    if usage is None:
        usage = await StoreUsage.load(index)
    disk_total = free = 0
    disk = (segments if segments is not None else FileSegments(root)).disk_path
    if disk is None:  # not on a local disk (S3): deleting footage frees nothing here
        policy = replace(policy, min_free_bytes=None, min_free_percent=None)
    if disk is not None and (policy.min_free_bytes is not None or policy.min_free_percent is not None):
        # Read once, before deleting anything: what this sweep frees is counted, not re-read.
        disk_total, free = await asyncio.to_thread(_disk_usage, disk)
        # Files already on their way out count as free: or each sweep would delete again what the
        # collector has not reached yet.
        free += (await garbage.pending(index.conn, failed=False))[1]
    sweeper = _Sweeper(index.conn, report, dry_run, usage)
    cameras = await _cameras(index.conn)
    protected = await _locked_events(index.conn)
    overrides = await _age_overrides(index.conn)
    # Age: one pass in time order over every camera through segments_by_time (deleting in index order
    # touches each page once), reading only rows older than the shortest limit; each row is then held
    # to its own camera's limit.
    ages = {camera: overrides.get(camera, policy.max_age_us) for camera in cameras}
    limits = [age for age in ages.values() if age is not None]
    if limits:
        await sweeper.age({c: (now_us - a if a is not None else None) for c, a in ages.items()},
                          now_us - min(limits), protected)
    await sweeper.finish_batch()
    # Space: the oldest of all cameras first, through segments_by_time.
    total = usage.total_bytes - (report.bytes_freed if dry_run else 0)  # a dry run leaves usage alone
    want_size = total - policy.max_bytes if policy.max_bytes is not None else 0
    floor = policy.min_free_for(disk_total)
    want_free = floor - free - report.bytes_freed if floor is not None else 0
    if want_size > 0 or want_free > 0:
        report.unmet_bytes = await sweeper.space(max(want_size, 0), max(want_free, 0), protected)
    await sweeper.finish_batch()
    report.skipped_locked = len(sweeper.locked_ids)
    await sweeper.oldest_remaining(cameras)
    if not dry_run:
        report.snapshots_deleted = await _forget_snapshots(index.conn, report)
    report.duration_s = time.monotonic() - started
    return report


async def _forget_snapshots(conn: aiosqlite.Connection, report: SweepReport) -> int:
    """Events' snapshots (JPEGs in the index) go with the footage they were taken from: an event that ended
    before its camera's oldest remaining segment, and is not locked, keeps its label and counts, not its
    picture. Without this the index would grow by every labelled event's JPEG for ever."""
    deleted = 0
    for camera, cam in report.by_camera.items():
        if cam.oldest_remaining_us is None:
            continue
        async with transaction(conn):
            cur = await conn.execute(
                "DELETE FROM event_snapshots WHERE event_id IN (SELECT id FROM events WHERE camera = ? "
                "AND end_us < ? AND locked = 0)", (camera, cam.oldest_remaining_us))
            deleted += max(0, cur.rowcount)
    return deleted


class RetentionTask:
    """Runs ``sweep`` every ``interval_s`` and soon after ``poke()``, on a connection of its own."""

    def __init__(self, root: Path, policy: RetentionPolicy, *, interval_s: float = 60.0,
                 min_gap_s: float = 1.0, locks: KeyedLocks | None = None,
                 segments: SegmentStore | None = None, index: str | None = None,
                 lease: Lease | None = None) -> None:
        """``index``: the index URL (``sht store --index``; default ROOT/index.sqlite3). ``lease``: sweeps and
        file deletion run only while it is held (several stores on one PostgreSQL index; default: always)."""
        self.root, self.policy, self.locks = root, policy, locks
        self.index_url = index
        self.lease: Lease = lease or SoleStore()
        self.segments: SegmentStore = segments if segments is not None else FileSegments(root)
        self.interval_s, self.min_gap_s = interval_s, min_gap_s  # min gap: pokes cannot make it spin
        self.usage = StoreUsage()
        self.last_report: SweepReport | None = None
        self.sweeps = 0
        self.deleted_total: dict[str, int] = {"age": 0, "size": 0, "free": 0}  # since start, for /metrics
        self.freed_bytes_total = 0
        self.collected_files_total = 0  # files deleted by the collector since start
        self._disk_total = 0
        self._wake = asyncio.Event()
        self._sweeping = asyncio.Lock()
        self._index: Index | None = None
        self._task: asyncio.Task | None = None
        self._warned_unmet = -math.inf

    async def start(self) -> None:
        self._index = await open_index(self.index_url or index_path(self.root))
        self.usage = await StoreUsage.load(self._index)  # the one SUM; ingest and sweeps keep it current
        disk = self.segments.disk_path
        if disk is not None:
            self._disk_total, _ = await asyncio.to_thread(_disk_usage, disk)
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        # Cancelling mid-batch is safe: a batch's rows move to garbage in one transaction, and a
        # garbage row goes only after its file, so what is left is finished at the next start.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._index is not None:
            await self._index.close()
            self._index = None

    def poke(self) -> None:
        self._wake.set()

    def note_ingested(self, size: int) -> None:
        """The Ingestor calls this after each committed segment."""
        self.usage.note_ingested(size)
        if self.policy.max_bytes is not None and self.usage.total_bytes > self.policy.max_bytes:
            self.poke()

    def note_free_bytes(self, free: int) -> None:
        """The Ingestor calls this with the free space it measured before writing."""
        floor = self.policy.min_free_for(self._disk_total)
        if floor is not None and free < floor:
            self.poke()

    async def sweep_now(self) -> SweepReport:
        assert self._index is not None, "start() first"
        async with self._sweeping:
            report = await sweep(self._index, self.root, self.policy, now_us(), usage=self.usage,
                                 segments=self.segments)
        self.last_report = report
        self.sweeps += 1
        for reason, count in report.by_reason.items():
            self.deleted_total[reason] = self.deleted_total.get(reason, 0) + count
        self.freed_bytes_total += report.bytes_freed
        if report.deleted:
            log.info("retention deleted %d segments, %d bytes (age %d, size %d, free %d) in %.2f s; %d kept "
                     "for locked events; oldest now %s", report.deleted, report.bytes_freed, report.by_reason["age"],
                     report.by_reason["size"], report.by_reason["free"], report.duration_s, report.skipped_locked,
                     iso_utc(report.oldest_remaining_us) if report.oldest_remaining_us is not None else "none")
        if report.unmet_bytes and time.monotonic() - self._warned_unmet > 600:
            self._warned_unmet = time.monotonic()
            log.warning("retention could not free %d more bytes: what is left is locked by events or "
                        "there is nothing left to delete", report.unmet_bytes)
        return report

    async def collect_now(self) -> garbage.CollectReport:
        """Delete the files of the rows sweeps have removed (also those a crash left pending)."""
        assert self._index is not None, "start() first"
        async with self._sweeping:
            report = await garbage.collect(self._index.conn, self.root, locks=self.locks, segments=self.segments)
        self.collected_files_total += report.files
        if report.files or report.errors:
            log.info("retention deleted %d files (%d bytes) in %.2f s%s", report.files, report.bytes,
                     report.duration_s, f"; {report.errors} could not be deleted, retried later"
                     if report.errors else "")
        return report

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a poke from now on asks for another sweep
            if self.lease.held:  # else another store sharing the index does it
                await self._sweep_and_collect()
            await asyncio.sleep(self.min_gap_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(self.interval_s - self.min_gap_s, 0))


    async def _sweep_and_collect(self) -> None:
        try:
            assert self._index is not None
            if self._index.dialect != "sqlite":
                # Other stores ingest into the same index: this store's running total misses their segments.
                self.usage = await StoreUsage.load(self._index)
            await self.sweep_now()
        except Exception:
            log.exception("retention sweep failed; retrying in %.0f s", self.interval_s)
        try:
            await self.collect_now()  # also when the sweep failed: what earlier sweeps left
        except Exception:
            log.exception("deleting the files of removed segments failed; retrying in %.0f s", self.interval_s)


class _Sweeper:
    """Finds the rows to delete and moves them to ``garbage``, a batch per transaction."""

    def __init__(self, conn: aiosqlite.Connection, report: SweepReport, dry_run: bool, usage: StoreUsage) -> None:
        self.conn, self.report, self.dry_run, self.usage = conn, report, dry_run, usage
        self.pending: list[_Row] = []
        self.marked: set[int] = set()  # dry run: ids that would have gone (the rows stay)
        self.locked_ids: set[int] = set()

    async def age(self, cutoffs: dict[str, int | None], latest_cutoff_us: int,
                  protected: dict[str, list[tuple[int, int]]]) -> None:
        sql = (f"SELECT {_COLUMNS} FROM segments WHERE start_us < ? AND (start_us, id) > (?, ?) "
               "ORDER BY start_us, id LIMIT ?")
        async with contextlib.aclosing(self._pages(sql, latest_cutoff_us)) as pages:
            async for rows in pages:
                # The hot loop of a big prune (864,000 rows for a day at 100 cameras): plain tuples.
                await self._take([row for row in rows
                                  if (cutoff := cutoffs.get(row[_CAMERA])) is not None and row[_END] <= cutoff
                                  and (row[_CAMERA] not in protected or not self._is_locked(row, protected))],
                                 "age")

    async def space(self, want_size: int, want_free: int, protected: dict[str, list[tuple[int, int]]]) -> int:
        """Delete the oldest until both wants are met; returns the bytes still wanted."""
        sql = f"SELECT {_COLUMNS} FROM segments WHERE (start_us, id) > (?, ?) ORDER BY start_us, id LIMIT ?"
        async with contextlib.aclosing(self._pages(sql)) as pages:
            async for rows in pages:
                for reason in ("size", "free"):
                    taken = []
                    for row in rows:
                        if want_size <= 0 and want_free <= 0 or reason == "size" and want_size <= 0:
                            break
                        if row[_ID] in self.marked or self._is_locked(row, protected):
                            continue
                        self.marked.add(row[_ID])
                        taken.append(row)
                        want_size -= row[_SIZE]
                        want_free -= row[_SIZE]
                    await self._take(taken, reason)
                if want_size <= 0 and want_free <= 0:
                    break
        return max(want_size, want_free, 0)

    async def _pages(self, sql: str, *params: object) -> AsyncGenerator[list[_Row], None]:
        """Pages of rows in (start_us, id) order; keyset paging, so deleting read rows moves nothing."""
        after = (-(2**63), 0)
        while True:
            async with self.conn.execute(sql, (*params, *after, BATCH_ROWS)) as cur:
                rows: list[_Row] = await cur.fetchall()  # type: ignore[assignment]  # _COLUMNS' shape
            yield rows
            if len(rows) < BATCH_ROWS:
                return
            after = (rows[-1][_START], rows[-1][_ID])

    def _is_locked(self, row: _Row, protected: dict[str, list[tuple[int, int]]]) -> bool:
        for start, end in protected.get(row[_CAMERA], ()):
            if start < row[_END] and row[_START] < end:
                self.locked_ids.add(row[_ID])
                return True
        return False

    async def _take(self, rows: list[_Row], reason: str) -> None:
        if not rows:
            return
        self.report.deleted += len(rows)
        self.report.by_reason[reason] += len(rows)
        if self.dry_run:
            self.marked.update(row[_ID] for row in rows)
            self._account([(camera, count, size) for camera, (count, size) in _per_camera(rows).items()])
            return
        self.pending += rows
        while len(self.pending) >= BATCH_ROWS:
            batch, self.pending = self.pending[:BATCH_ROWS], self.pending[BATCH_ROWS:]
            await self._write(batch)

    async def finish_batch(self) -> None:
        """Write what is pending: after this, the sweep's rows are all in garbage."""
        batch, self.pending = self.pending, []
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[_Row]) -> None:
        """Delete ``batch``'s rows in one transaction, noting per camera and hour the range of start times
        for the file collector (store/maintenance/garbage.py) and the hours whose timeline summaries are now stale
        (store/maintenance/coverage.py). SQLite groups the rows: no Python loop over them."""
        ids = [row[_ID] for row in batch]
        marks = ",".join("?" * len(ids))
        try:
            async with self.conn.execute(
                f"SELECT camera, start_us - start_us % {HOUR_US}, MIN(start_us), MAX(start_us), MAX(end_us), "
                f"COUNT(*), SUM(size_bytes) FROM segments WHERE id IN ({marks}) GROUP BY 1, 2", ids) as cur:
                groups = [(str(c), int(h), int(lo), int(hi), int(end), int(n), int(size))
                          for c, h, lo, hi, end, n, size in await cur.fetchall()]
            await self.conn.executemany(
                "INSERT INTO garbage (camera, from_us, to_us, segments, size_bytes) VALUES (?, ?, ?, ?, ?)",
                [(c, lo, hi, n, size) for c, _, lo, hi, _, n, size in groups])
            await coverage_marks.mark(self.conn, [(c, hour, end) for c, hour, _, _, end, _, _ in groups])
            await self.conn.execute(f"DELETE FROM segments WHERE id IN ({marks})", ids)
            await self.conn.commit()
        except BaseException:
            await self.conn.rollback()
            raise
        self._account([(c, n, size) for c, _, _, _, _, n, size in groups])
        self.usage.note_deleted(sum(g[6] for g in groups), sum(g[5] for g in groups))

    def _account(self, per_camera: list[tuple[str, int, int]]) -> None:
        for camera, count, size in per_camera:
            cam = self.report.by_camera.setdefault(camera, CameraSweep())
            cam.segments += count
            cam.bytes += size
            self.report.bytes_freed += size

    async def oldest_remaining(self, cameras: list[str]) -> None:
        for camera in cameras:
            first = await self._first_kept(camera)
            if first is not None:
                self.report.by_camera.setdefault(camera, CameraSweep()).oldest_remaining_us = first
        firsts = [c.oldest_remaining_us for c in self.report.by_camera.values() if c.oldest_remaining_us is not None]
        self.report.oldest_remaining_us = min(firsts, default=None)

    async def _first_kept(self, camera: str) -> int | None:
        after = -(2**63)
        while True:  # in a dry run, skip the rows that would have gone
            async with self.conn.execute(
                "SELECT id, start_us FROM segments WHERE camera = ? AND start_us > ? ORDER BY start_us LIMIT ?",
                (camera, after, BATCH_ROWS),
            ) as cur:
                rows = list(await cur.fetchall())
            for row_id, start in rows:
                if row_id not in self.marked:
                    return int(start)
            if len(rows) < BATCH_ROWS:
                return None
            after = rows[-1][1]


def _per_camera(rows: list[_Row]) -> dict[str, tuple[int, int]]:
    """camera -> (segments, bytes) of these rows."""
    counts: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row[_CAMERA]] += 1
        sizes[row[_CAMERA]] += row[_SIZE]
    return {camera: (counts[camera], sizes[camera]) for camera in counts}


async def _cameras(conn: aiosqlite.Connection) -> list[str]:
    # Skip-scan of (camera, start_us): one index seek per camera, not a pass over every row.
    cameras: list[str] = []
    sql = "SELECT MIN(camera) FROM segments WHERE camera > ?"
    current = ""
    while True:
        async with conn.execute(sql, (current,)) as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return cameras
        current = row[0]
        cameras.append(current)


async def _locked_events(conn: aiosqlite.Connection) -> dict[str, list[tuple[int, int]]]:
    protected: dict[str, list[tuple[int, int]]] = defaultdict(list)
    async with conn.execute("SELECT camera, start_us, end_us FROM events WHERE locked = 1") as cur:
        for camera, start, end in await cur.fetchall():
            protected[camera].append((start, end))
    return dict(protected)


async def _age_overrides(conn: aiosqlite.Connection) -> dict[str, int | None]:
    """Per-camera ``retention_days`` settings, in µs. A value the setting's spec refuses is logged and ignored."""
    spec = SETTINGS[RETENTION_DAYS]
    overrides: dict[str, int | None] = {}
    async with conn.execute("SELECT camera, value FROM settings WHERE key = ?", (RETENTION_DAYS,)) as cur:
        rows = await cur.fetchall()
    for camera, text in rows:
        try:
            days = spec.check(json.loads(text))
        except (ValueError, SettingError) as exc:
            log.warning("ignoring %s = %s for camera %s: %s", RETENTION_DAYS, text, camera, exc)
            continue
        if days is not None:  # null: back to the store's --max-age
            overrides[camera] = int(days * DAY_US)
    return overrides
