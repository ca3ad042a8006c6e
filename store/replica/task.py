"""``sht store --replica URL``: the store's task that keeps the off-site copy current (store/replica/__init__.py has
the layout).

Each tick (``poll_s``) it measures how far behind the replica is and, unless it is backing off after a failure,
copies: the segments rows after its cursor, in id order, a few PUTs at a time, then the events whose fingerprint
differs from the one last copied (new, open and recently ended events each tick; every event each
``full_scan_s`` and at start, so a lock or a late label on an old event is copied too). What was copied is
written to ROOT/replica/state.sqlite3 after the PUTs, so a crash only copies a few things twice.

It reads the index on a connection of its own and never holds anything ingest waits for: the replica down,
slow or refusing only makes it fall behind (``/health`` ``replica``, ``sht_replica_*`` in ``/metrics``), and it
tries again after 1 s, doubling up to ``backoff_max_s``. With several stores on one PostgreSQL index, only the
one holding the maintenance lease copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.clock import now_us
from shared.metrics import Family, counter, gauge
from store.index import index_path
from store.replica import FORMAT, ReplicaOptions
from store.replica.bucket import ReplicaBucket
from store.replica.copying import (
    Copied,
    EventRow,
    SegmentRow,
    copy_event,
    copy_segment,
    describe_failure,
    events_after,
    events_by_id,
    open_events,
    segments_after,
)
from store.replica.cursor import SegmentCursor
from store.replica.records import MARKER
from store.replica.state import CursorRow, ReplicaState
from store.segments import SegmentStore, SegmentStoreError
from store.segments.url import S3Location

log = logging.getLogger(__name__)

SEGMENT_BATCH = 64
RECENT_S = 15 * 60.0  # events added this recently are compared with the copy on every tick
SAVE_EVERY = 100  # events copied between two writes of the state
FAR_BEHIND, FAR_BEHIND_EVERY_S = 10_000, 10.0  # segments pending, and how often to count them then
MAX_NAMED = 5000  # ids named in one query (SQLite takes 32766 parameters)


class ReplicaTask:
    def __init__(self, root: Path, location: S3Location, segments: SegmentStore, *, index: str | None = None,
                 options: ReplicaOptions | None = None, lease: Any = None) -> None:
        """``segments``: the store's own segment storage (read from); ``index``: its index URL (default
        ROOT/index.sqlite3); ``lease``: copy only while ``lease.held`` (default: always)."""
        self.root, self.location, self.source, self.index_url = root, location, segments, index
        self.options = options or ReplicaOptions()
        self.lease = lease
        self.bucket = ReplicaBucket(location, root / "cache" / "replica")
        self.copied = Copied()
        self.failures = 0
        self.last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_copy_at: float | None = None
        self._failing = False
        self._index: Any = None  # store.index.db.Index
        self._state: ReplicaState | None = None
        self.cursor, self._cursor_row = SegmentCursor(), CursorRow()  # read from the state at start
        self._tasks: list[asyncio.Task[None]] = []
        self._rows_read: dict[int, tuple[str, int]] = {}  # the last batch's rows: id -> (camera, start_us)
        self._digests: dict[int, int] = {}  # event id -> fingerprint copied
        # Event id -> (when its change was first seen, its fingerprint then). Not the rows: they are read again when
        # copied, so a first copy of 100,000 events does not hold them all.
        self._pending: dict[int, tuple[float, int]] = {}
        self._id_marks: deque[tuple[float, int]] = deque()  # (when, the newest event id then) at full scans
        self._next_full_scan = 0.0
        self.segments_pending = self.bytes_pending = 0
        self._oldest_pending_us: int | None = None
        self._segments_measured_at = 0.0
        self.measured_at = 0.0  # monotonic: when the figures were last read (a change after it is not in them)
        self.full_scan_at = 0.0  # monotonic: when every event was last compared with the copy

    async def start(self) -> None:
        """Open the state and the index; the replica itself is reached in the background (the store starts and
        ingests while it is down). ``SegmentStoreError`` only when its client library is missing."""
        try:
            import aiobotocore  # noqa: F401
        except ImportError as exc:
            raise SegmentStoreError(f"--replica needs aiobotocore ({exc}): pip install 'sht-cctv[cluster]'",
                                    retry=False) from None
        from store.index.db import Index

        self._state = await asyncio.to_thread(ReplicaState.open, self.root, self.location.url())
        self.cursor, self._cursor_row = await asyncio.to_thread(self._state.load_cursor)
        self._digests = await asyncio.to_thread(self._state.load_events)
        self._index = await Index.open(self.index_url or index_path(self.root))
        # Measuring apart from copying: a PUT that hangs on a dead link must not freeze the figures.
        self._tasks = [asyncio.create_task(self._measure_loop(), name="replica-lag"),
                       asyncio.create_task(self._copy_loop(), name="replica")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.bucket.close()
        if self._index is not None:
            await self._index.close()
            self._index = None
        if self._state is not None:
            await asyncio.to_thread(self._state.close)
            self._state = None

    @property
    def copying(self) -> bool:
        return self.lease is None or bool(self.lease.held)

    async def _measure_loop(self) -> None:
        while True:
            try:
                if self.copying:
                    await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the index failing: ingest says so; the figures wait for it
                log.warning("replica: could not measure the lag", exc_info=True)
            await asyncio.sleep(self.options.poll_s)

    async def _copy_loop(self) -> None:
        delay = 1.0
        while True:
            wait = self.options.poll_s
            try:
                if self.copying and await self.copy_once():
                    wait = 0  # more segments are waiting
                self._failing, delay = False, 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the replica (or the source) failing: try again later
                self._failed(exc)
                wait, delay = delay, min(delay * 2, self.options.backoff_max_s)
            await asyncio.sleep(wait)

    def _failed(self, exc: BaseException) -> None:
        message = describe_failure(exc)
        self.failures += 1
        if message != self.last_error or not self._failing:
            log.warning("replica %s: %s (ingest goes on; trying again with backoff)", self.location.describe(),
                        message)
        if not isinstance(exc, OSError):
            log.error("replica: unexpected failure", exc_info=exc)
        self.last_error, self._last_error_at, self._failing = message, time.monotonic(), True

    # --- measuring ---------------------------------------------------------------------------------

    async def measure(self) -> None:
        """Figures for /health and /metrics: the segments after the cursor, and the events that changed."""
        self.measured_at = time.monotonic()
        await self._measure_segments()
        await self._scan_events()

    async def _measure_segments(self) -> None:
        # Far behind (a day of rows to count after the cursor), counting costs: then every 10 s, not every tick.
        if self.segments_pending >= FAR_BEHIND and \
                time.monotonic() - self._segments_measured_at < FAR_BEHIND_EVERY_S:
            return
        conn = self._index.conn
        above = sorted(self.cursor.above)
        skip = f" AND id NOT IN ({','.join('?' * len(above))})" if 0 < len(above) <= MAX_NAMED else ""
        async with conn.execute(f"SELECT COUNT(*), SUM(size_bytes), MIN(received_us) FROM segments WHERE id > ?{skip}",
                                (self.cursor.upto, *(above if skip else ()))) as cur:
            count, size, oldest = await cur.fetchone()
        extra = 0 if skip else len(above)  # too many to name: they were counted, take them off roughly
        self.segments_pending = max(0, int(count) - extra)
        self.bytes_pending = max(0, int(size or 0) - (0 if skip else sum(self.cursor.above.values())))
        self._oldest_pending_us = None if oldest is None or not self.segments_pending else int(oldest)
        self._segments_measured_at = time.monotonic()

    async def _scan_events(self) -> None:
        """Every event at a full scan; else those after the id the newest event had RECENT_S ago (new and recently
        changed events are there) and the open ones. Both quick reads go along an index."""
        now = time.monotonic()
        conn = self._index.conn
        if now >= self._next_full_scan:
            newest = 0
            async for page in events_after(conn):
                self._compare(page, now)
                newest = page[-1].event_id
            self._next_full_scan, self.full_scan_at = now + self.options.full_scan_s, now
            self._id_marks.append((now, newest))
            while len(self._id_marks) > 1 and self._id_marks[1][0] <= now - RECENT_S:
                self._id_marks.popleft()  # the newest mark at least RECENT_S old is the floor
        else:
            async for page in events_after(conn, self._id_marks[0][1]):
                self._compare(page, now)
            self._compare(await open_events(conn), now)

    def _compare(self, events: list[EventRow], now: float) -> None:
        for event in events:
            digest = event.digest
            if self._digests.get(event.event_id) == digest:
                self._pending.pop(event.event_id, None)
            else:
                self._pending[event.event_id] = (self._pending.get(event.event_id, (now, 0))[0], digest)

    # --- copying ------------------------------------------------------------------------------------

    async def copy_once(self) -> bool:
        """One round: the marker, a batch of segments, the changed events. True when more segments wait."""
        if not self.bucket.connected:
            await self.bucket.start()
        await self._write_marker()
        await self._check_index()
        more = await self._copy_segments()
        await self._copy_events()
        await self._measure_segments()  # what is left, now (events: _save_events took off what went)
        return more

    async def _write_marker(self) -> None:
        assert self._state is not None
        if await asyncio.to_thread(self._state.marker_written):
            return
        if not await self.bucket.exists(MARKER):
            text = json.dumps({"format": FORMAT, "created_us": now_us(), "by": "sht store --replica"}).encode()
            await self.bucket.put_object(MARKER, text, hashlib.sha256(text).hexdigest(), "application/json")
        await asyncio.to_thread(self._state.set_marker_written)

    async def _check_index(self) -> None:
        """Start the cursor over when the index is not the one it was made for: its ids would skip rows."""
        if self.cursor.upto == 0:
            return
        conn = self._index.conn
        async with conn.execute("SELECT MAX(id) FROM segments") as cur:
            (highest,) = await cur.fetchone()
        moved = highest is None or int(highest) < self.cursor.upto
        if not moved and self._cursor_row.camera is not None:
            async with conn.execute("SELECT camera, start_us FROM segments WHERE id = ?", (self.cursor.upto,)) as cur:
                found = await cur.fetchone()
            moved = found is not None and (found[0], int(found[1])) != (self._cursor_row.camera,
                                                                        self._cursor_row.start_us)
        if moved:
            log.warning("replica: the index's segment ids are not those the replica's cursor was made for (rebuilt "
                        "or emptied?): going over every segment again (PUTs of what is there already repeat)")
            self.cursor.reset()
            self._cursor_row = CursorRow()
            await asyncio.to_thread(self._state.save_cursor, self.cursor, self._cursor_row)  # type: ignore[union-attr]

    async def _copy_segments(self) -> bool:
        # Rows copied above a gap are left out of the read (while there are few: a gap lasts at most SETTLE_S).
        above = sorted(self.cursor.above) if len(self.cursor.above) <= MAX_NAMED else []
        rows = await segments_after(self._index.conn, self.cursor.upto, SEGMENT_BATCH, above)
        self._rows_read = {r.row_id: (str(r.row["camera"]), int(r.row["start_us"])) for r in rows}
        wanted = set(self.cursor.wanted([r.row_id for r in rows]))
        semaphore = asyncio.Semaphore(self.options.parallel)
        failed: list[BaseException] = []

        async def one(segment: SegmentRow) -> None:
            async with semaphore:
                if failed:
                    return  # the replica (or the source) fails: the rest waits for the next round
                try:
                    await copy_segment(self._index.conn, self.source, self.bucket, segment, self.copied)
                except Exception as exc:  # noqa: BLE001 - raised below, after the cursor keeps what was done
                    failed.append(exc)
                    return
                self.cursor.handled(segment.row_id, int(segment.row["size_bytes"]))
                self._last_copy_at = time.monotonic()

        try:
            await asyncio.gather(*(one(r) for r in rows if r.row_id in wanted))
        finally:  # also when stopped mid-batch: what was copied is kept
            await self._save_cursor([r.row_id for r in rows], complete=len(rows) < SEGMENT_BATCH)
        if failed:
            raise failed[0]
        return len(rows) == SEGMENT_BATCH

    async def _save_cursor(self, read: list[int], complete: bool) -> None:
        before = self.cursor.upto
        self.cursor.advance(read, time.monotonic(), complete=complete)
        if self.cursor.upto != before:
            at = self._rows_read.get(self.cursor.upto)
            # Without a row at upto (a gap, or one deleted since it was copied), nothing to recognise it by.
            self._cursor_row = CursorRow() if at is None else CursorRow(*at)
        await asyncio.to_thread(self._state.save_cursor, self.cursor, self._cursor_row)  # type: ignore[union-attr]

    async def _copy_events(self) -> None:
        done: dict[int, int] = {}
        try:
            pending = sorted(self._pending)
            for i in range(0, len(pending), SAVE_EVERY):
                for event in await events_by_id(self._index.conn, pending[i:i + SAVE_EVERY]):
                    if await copy_event(self._index.conn, self.bucket, event, self.copied):
                        done[event.event_id] = event.digest
                        self._last_copy_at = time.monotonic()
                await self._save_events(done)
                done = {}
        finally:
            await self._save_events(done)

    async def _save_events(self, done: dict[int, int]) -> None:
        if not done:
            return
        await asyncio.to_thread(self._state.save_events, done)  # type: ignore[union-attr]
        self._digests.update(done)
        for event_id, digest in done.items():
            if self._pending.get(event_id, (0, digest))[1] == digest:  # else it changed again since it was read
                self._pending.pop(event_id, None)

    # --- reporting ----------------------------------------------------------------------------------

    @property
    def seconds_behind(self) -> float:
        behind = 0.0
        if self._oldest_pending_us is not None:
            behind = max(0.0, (now_us() - self._oldest_pending_us) / 1e6)
        if self._pending:
            behind = max(behind, time.monotonic() - min(since for since, _ in self._pending.values()))
        return round(behind, 1)

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        events_pending = len(self._pending)
        if not self.copying:
            state = "standby"  # another store of the cluster holds the lease and copies
        elif self._failing:
            state = "failing"
        elif self.segments_pending or events_pending:
            state = "copying"
        else:
            state = "caught-up"
        return {
            "url": self.location.url(), "state": state, "seconds_behind": self.seconds_behind,
            "bytes_behind": self.bytes_pending, "objects_pending": self.segments_pending + events_pending,
            "segments_pending": self.segments_pending, "events_pending": events_pending,
            "copied": {"segments": self.copied.segments, "events": self.copied.events,
                       "snapshots": self.copied.snapshots, "bytes": self.copied.bytes},
            "skipped": self.copied.skipped, "failures": self.failures, "last_error": self.last_error,
            "last_error_s_ago": None if self._last_error_at is None else round(now - self._last_error_at, 1),
            "last_copy_s_ago": None if self._last_copy_at is None else round(now - self._last_copy_at, 1),
            "measured_s_ago": round(now - self.measured_at, 1) if self.measured_at else None,
        }

    def metric_families(self) -> Iterator[Family]:
        behind = gauge("sht_replica_seconds_behind", "Age of the oldest acknowledged segment or event change not "
                       "yet in the off-site copy (0: caught up)")
        behind.add_metric([], self.seconds_behind)
        size = gauge("sht_replica_bytes_behind", "Bytes of segments not yet in the off-site copy")
        size.add_metric([], self.bytes_pending)
        pending = gauge("sht_replica_pending_objects", "Segments and events not yet in the off-site copy", ("kind",))
        pending.add_metric(["segment"], self.segments_pending)
        pending.add_metric(["event"], len(self._pending))
        copied = counter("sht_replica_copied_objects", "Objects PUT to the off-site copy", ("kind",))
        for kind, n in (("segment", self.copied.segments), ("event", self.copied.events),
                        ("snapshot", self.copied.snapshots)):
            copied.add_metric([kind], n)
        copied_bytes = counter("sht_replica_copied_bytes", "Bytes PUT to the off-site copy")
        copied_bytes.add_metric([], self.copied.bytes)
        skipped = counter("sht_replica_skipped_segments", "Segments not copied: their bytes were missing or did not "
                          "match their row (see the log)")
        skipped.add_metric([], self.copied.skipped)
        failures = counter("sht_replica_failures", "Rounds of copying that failed (replica down, refusing...)")
        failures.add_metric([], self.failures)
        up = gauge("sht_replica_up", "1 while the last round of copying succeeded")
        up.add_metric([], 0.0 if self._failing else 1.0)
        yield from (behind, size, pending, copied, copied_bytes, skipped, failures, up)
