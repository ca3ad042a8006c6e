"""The segments: every row of the source in id order, and with ``--to-segments`` its object.

An object is PUT the way the off-site copy PUTs one (store/replica/copying.py): its bytes read from the source's
storage and checked against its row's size and SHA-256, then PUT with that SHA-256, which the server verifies
(``BadDigest``: nothing stored, tried once more), carrying its row (``x-amz-meta-sht-row``) and the source's
identity. With ``--to-index`` the rows of a batch are written, in one transaction, only once every object of the
batch that will be is stored; a row whose object could not be read or did not match is left out (and said).

A second run (``resume``): rows the target index already has are skipped (their object was verified before they
were written); without ``--to-index`` an object already holding its row's SHA-256 (a HEAD) is not PUT again. Rows
the target holds that the source no longer has (the old store ran between the two runs, and its retention deleted
them) are deleted first, with their objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiosqlite

from store.index import coverage_marks
from store.index.db import transaction
from store.migrate import MIGRATED_FROM
from store.migrate.progress import Progress, size
from store.migrate.source import columns, segment_totals
from store.replica.bucket import ReplicaBucket
from store.replica.copying import SegmentMismatch, read_matching
from store.replica.records import row_metadata
from store.segments import SegmentStore, SegmentStoreError, name_of

BATCH = 64  # segments whose objects are PUT before their rows are written together
ROW_PAGE = 2000  # rows read (and written, without a bucket) at once
SKIPPED_KEPT = 1000


@dataclass
class SegmentsReport:
    put: int = 0  # objects this run PUT, each SHA-256 verified by the server
    put_bytes: int = 0
    present: int = 0  # objects a HEAD found already holding their row's SHA-256 (a second run)
    rows_written: int = 0
    removed: int = 0  # rows (and objects) of the target the source no longer has
    skipped: list[str] = field(default_factory=list)  # segments not copied, and why (the first SKIPPED_KEPT)
    skipped_count: int = 0

    def skip(self, line: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_KEPT:
            self.skipped.append(line)
    duration_s: float = 0.0
    rate: float = 0.0  # bytes a second this run PUT
    paused: bool = False  # stopped at its deadline (--stop-after) with segments left to copy


class SegmentCopier:
    def __init__(self, source: aiosqlite.Connection, source_segments: SegmentStore, identity: str, *,
                 target: Any = None, bucket: ReplicaBucket | None = None, resume: bool = False, parallel: int = 8,
                 deadline: float | None = None, say: Callable[[str], None] = print) -> None:
        """``target``: the new index's connection (None: the rows stay where they are); ``bucket``: where the
        objects go (None: the segments stay where they are); ``resume``: the target holds an earlier run's copy;
        ``deadline`` (``time.monotonic()``): stop after the batch that passes it, the rest left for the next run."""
        self.source, self.segments, self.target, self.bucket = source, source_segments, target, bucket
        self.metadata = {MIGRATED_FROM: quote(identity, safe=":/")}
        self.resume, self.deadline, self.say = resume, deadline, say
        self.report = SegmentsReport()
        self._slots = asyncio.Semaphore(parallel)
        self._cols: list[str] = []

    async def run(self) -> SegmentsReport:
        # Every column the source has (open_source: this sht's schema version), the shape's (play_*) among them:
        # a row's shape goes over as it is, NULL staying NULL for playback to fill.
        self._cols = await columns(self.source, "segments")
        total, total_bytes = await segment_totals(self.source)
        self.say(f"{total:,} segments, {size(total_bytes)}" + (f", to {self.bucket.description}" if self.bucket else
                                                               " (their rows)"))
        if self.target is not None and self.resume:
            await self._remove_what_the_source_lost()
        progress = Progress("segments", total, total_bytes, self.say)
        page = BATCH if self.bucket is not None else ROW_PAGE
        after = 0
        while True:
            async with self.source.execute(f"SELECT {', '.join(self._cols)} FROM segments WHERE id > ? ORDER BY id "
                                           "LIMIT ?", (after, page)) as cur:
                rows = [dict(zip(self._cols, r, strict=True)) for r in await cur.fetchall()]
            if not rows:
                break
            worked = await self._batch(rows, progress)
            after = int(rows[-1]["id"])
            # Past the deadline, stop after a batch that copied something (a second run passes what is done).
            if self.deadline is not None and time.monotonic() >= self.deadline and worked and len(rows) == page:
                self.report.paused = True
                break
        progress.report()
        self.report.duration_s, self.report.rate = progress.elapsed_s, progress.rate
        return self.report

    async def _batch(self, rows: list[dict[str, Any]], progress: Progress) -> int:
        """Copy what of ``rows`` the target lacks; returns how many segments that was (rows written, or objects PUT
        without an index)."""
        held = await self._held_ids(int(rows[0]["id"]), int(rows[-1]["id"])) if self.target is not None else set()
        todo = [r for r in rows if int(r["id"]) not in held]
        moved, copied = 0, len(todo)
        if self.bucket is not None:
            outcomes = await asyncio.gather(*(self._object(r) for r in todo))
            ready = [r for r, sent in zip(todo, outcomes, strict=True) if sent is not None]
            moved = sum(sent for sent in outcomes if sent)
            copied = sum(1 for sent in outcomes if sent) if self.target is None else len(ready)
        else:
            ready = todo
        if self.target is not None and ready:
            await self._write_rows(ready)
        lost = {int(r["id"]) for r in todo} - {int(r["id"]) for r in ready}
        progress.add(len(rows) - len(lost), sum(int(r["size_bytes"]) for r in rows if int(r["id"]) not in lost), moved)
        return copied

    async def _held_ids(self, first: int, last: int) -> set[int]:
        async with self.target.execute("SELECT id FROM segments WHERE id >= ? AND id <= ?", (first, last)) as cur:
            return {int(r[0]) for r in await cur.fetchall()}

    async def _object(self, row: dict[str, Any]) -> int | None:
        """Put one segment's object; the bytes sent (0: it was there already), or None when it cannot be copied."""
        assert self.bucket is not None
        path, size, sha256 = str(row["path"]), int(row["size_bytes"]), str(row["sha256"])
        name = name_of(path)
        if name is None:
            self.report.skip(f"{path}: not a path the store writes (row {row['id']})")
            return None
        async with self._slots:
            if self.target is None and self.resume:
                held = await self.bucket.stored(name)
                if held is not None and held.sha256 == sha256 and held.size == size:
                    self.report.present += 1
                    return 0
            try:
                data = await read_matching(self.segments, name, size, sha256)
            except FileNotFoundError:
                self.report.skip(f"{path}: no such segment in {self.segments.description}")
                return None
            except SegmentMismatch as exc:
                self.report.skip(f"{path}: its bytes do not match its row ({exc})")
                return None
            metadata = row_metadata(row) | self.metadata
            for attempt in (1, 2):
                try:
                    await self.bucket.put_object(name, data, sha256, "video/mp4", metadata)
                    break
                except SegmentStoreError as exc:  # BadDigest (damaged on the way) is worth one more try
                    if exc.code != "write-failed" or attempt == 2:
                        raise
        self.report.put += 1
        self.report.put_bytes += len(data)
        return len(data)

    async def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        hours = {(str(r["camera"]), h) for r in rows
                 for h in coverage_marks.hours_touched(int(r["start_us"]), int(r["end_us"]))}
        async with transaction(self.target) as conn:
            # ON CONFLICT: a row an earlier run wrote between this run's look and now cannot be (the lease), but a
            # duplicate must never be made; the verification's counts would show one left out.
            await conn.executemany(
                f"INSERT INTO segments ({', '.join(self._cols)}) VALUES ({', '.join('?' * len(self._cols))}) "
                "ON CONFLICT DO NOTHING", [tuple(r[c] for c in self._cols) for r in rows])
            # Timeline summaries: marked dirty like any new row (the source's are copied over them at the end).
            await coverage_marks.mark(conn, [(camera, hour, hour + 1) for camera, hour in sorted(hours)])
        self.report.rows_written += len(rows)

    async def _remove_what_the_source_lost(self) -> None:
        """Delete the target's rows that the source no longer has as they are (id, camera, start, SHA-256), and
        their objects: the old store ran between two runs of migrate, and its retention deleted them."""
        key = "id, camera, start_us, sha256"
        after = 0
        while True:
            async with self.source.execute(f"SELECT {key} FROM segments WHERE id > ? ORDER BY id LIMIT ?",
                                           (after, ROW_PAGE)) as cur:
                wanted = [tuple(r) for r in await cur.fetchall()]
            last = int(wanted[-1][0]) if len(wanted) == ROW_PAGE else 2**62
            async with self.target.execute(f"SELECT {key}, path FROM segments WHERE id > ? AND id <= ?",
                                           (after, last)) as cur:
                held = [tuple(r) for r in await cur.fetchall()]
            keep = set(wanted)
            gone = [r for r in held if tuple(r[:4]) not in keep]
            if gone:
                ids = [int(r[0]) for r in gone]
                async with transaction(self.target) as conn:
                    await coverage_marks.mark_ids(conn, ids)
                    await conn.execute(f"DELETE FROM segments WHERE id IN ({','.join('?' * len(ids))})", ids)
                if self.bucket is not None:
                    await self.bucket.delete_many([n for r in gone if (n := name_of(str(r[4]))) is not None])
                self.report.removed += len(gone)
            if last == 2**62:
                return
            after = last
