"""``sht store check``: does the index agree with the segments (files under ROOT/segments, or S3 objects)?

Finds rows whose file is missing, ``.mp4`` files no row points at (orphans), size and
(with ``deep``) SHA-256 mismatches, and temporaries a crash left. ``repair``:

- a row whose file is missing: the row goes;
- a file whose size or hash disagrees with its row: the row goes (committed), then the
  file moves to ROOT/quarantine/ (never deleted: it may be the only copy of something);
- an orphan: re-indexed from the metadata inside the MP4 (store/media/segment_file.py), its shape from its sample
  table (store/index/shapes.py; NULL when that cannot be read), or quarantined if it cannot be read or does not
  belong at its path;
- a temporary: deleted.

The segments are read through the store's ``SegmentStore`` (store/segments): one listing of them all (the
file backend walks the directory, S3 lists the bucket's prefix), then the rows in batches against it.
Quarantine is ROOT/quarantine/ for files, the ``_quarantine/`` prefix for S3.

Repairs keep the store's invariant: a row is only ever inserted for a complete file and
deleted before its file is moved.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import aiosqlite

from store.index import coverage_marks
from store.index.db import Index, transaction
from store.index.fence import hold_exclusively, hour_of, removal_fence
from store.index.shapes import shape_of_path
from store.maintenance.garbage import Ranges, collect, pending_ranges
from store.media.files import is_temporary
from store.playback.segment_shape import SHAPE_COLUMNS
from store.segments import SegmentStore, StoredSegment, name_of, row_path, segment_name, start_of
from store.segments.files import FileSegments

BATCH_ROWS = 2000
UNKNOWN_NODE = "unknown"  # node of a file re-indexed without its embedded metadata
KINDS = ("missing", "size", "sha256", "orphan", "temporary")
MASS_MISSING_MIN = 20  # fewer missing rows than this are dropped by a repair whatever their share


@dataclass(frozen=True)
class Problem:
    kind: str  # one of KINDS
    path: str  # relative to ROOT
    detail: str
    row_id: int | None = None


@dataclass
class CheckReport:
    deep: bool = False
    rows: int = 0
    files: int = 0
    other_files: int = 0  # neither .mp4 nor temporary: reported, left alone
    pending_deletion: int = 0  # files whose rows retention removed, not deleted yet (store/maintenance/garbage.py)
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        c = Counter(p.kind for p in self.problems)
        return {kind: c[kind] for kind in KINDS}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def _check_rows(segments: SegmentStore, listed: dict[str, StoredSegment],
                      rows: list[tuple[int, str, int, str]], deep: bool) -> list[Problem]:
    """One batch of rows against the listing (and with ``deep``, their bytes' hashes)."""
    problems = []
    hash_these: list[tuple[int, str, str]] = []
    for row_id, rel, size, sha in rows:
        name = name_of(rel)
        if name is None:
            problems.append(Problem("missing", rel, "the row's path is outside ROOT/segments", row_id))
            continue
        found = listed.get(name)
        # Not listed: gone, or written after the listing while a store runs (it is there now: not missing).
        if found is None and not await segments.exists(name):
            problems.append(Problem("missing", rel, "the row's file does not exist", row_id))
            continue
        if found is not None and found.size != size:
            problems.append(Problem("size", rel, f"file has {found.size} bytes, the row says {size}", row_id))
        elif deep:
            hash_these.append((row_id, rel, sha))
    if hash_these:
        problems += await asyncio.to_thread(_hash_rows, segments, hash_these)
    return problems


def _hash_rows(segments: SegmentStore, rows: list[tuple[int, str, str]]) -> list[Problem]:
    """Worker thread: the SHA-256 of each row's segment against the row's."""
    problems = []
    for row_id, rel, sha in rows:
        try:
            with segments.open_local(str(name_of(rel))) as path:  # whole objects: a SHA-256 reads every byte
                digest = file_sha256(path)
        except FileNotFoundError:
            problems.append(Problem("missing", rel, "the row's file does not exist", row_id))
            continue
        if digest != sha:
            problems.append(Problem("sha256", rel, f"file hashes to {digest[:16]}…, the row says {sha[:16]}…",
                                    row_id))
    return problems


async def check_store(root: Path, index: Index, *, deep: bool = False, repair: bool = False,
                      segments: SegmentStore | None = None, drop_missing: bool = False) -> CheckReport:
    """Compare the index with the segments; with ``repair``, fix what was found. ``segments``: where they are
    (default: files under ROOT/segments).

    A repair keeps the rows of missing segments when they are most of the index (``mostly_elsewhere``): then the
    segments are far more likely somewhere else (a wrong --root or --segments, a disk not mounted) than gone, and
    dropping the rows would lose the index of footage that still exists. ``drop_missing`` drops them all the same.

    A repair runs beside no store of a SQLite index (the caller holds ROOT/store.lock), and beside any number of
    stores sharing a PostgreSQL index and a bucket: every object it deletes or moves, and every orphan it indexes,
    is handled under its hour's fence with a fresh look at the rows (store/index/fence.py), and a row is dropped as
    missing only when its object is gone (their rows are committed after their objects, which nothing removes
    while a row names them)."""
    store: SegmentStore = segments if segments is not None else FileSegments(root)
    started = time.monotonic()
    report = CheckReport(deep=deep)
    # The one full pass over the storage; fine for an admin command.
    listed = {entry.name: entry async for entry in store.list_all()}
    indexed: set[str] = set()
    after = 0
    while True:
        async with index.conn.execute(
            "SELECT id, path, size_bytes, sha256 FROM segments WHERE id > ? ORDER BY id LIMIT ?", (after, BATCH_ROWS)
        ) as cur:
            rows = [(int(i), str(p), int(s), str(h)) for i, p, s, h in await cur.fetchall()]
        if not rows:
            break
        report.rows += len(rows)
        indexed.update(r[1] for r in rows)
        report.problems += await _check_rows(store, listed, rows, deep)
        after = rows[-1][0]
    # Files retention still has to delete are neither orphans nor to be re-indexed.
    garbage = await pending_ranges(index.conn)
    for rel in sorted(row_path(name) for name in listed):
        if is_temporary(rel):
            report.problems.append(Problem("temporary", rel, "a half-written file left by a crash"))
        elif not rel.endswith(".mp4"):
            report.other_files += 1
        else:
            report.files += 1
            if rel in indexed:
                continue
            if _is_garbage(rel, garbage):
                report.pending_deletion += 1
            else:
                report.problems.append(Problem("orphan", rel, "no row points at this file"))
    if repair and report.problems:
        await _repair(store, index.conn, report, listed, drop_missing)
    if repair and report.pending_deletion:
        collected = await collect(index.conn, root, segments=store)
        report.repaired.append(f"deleted {collected.files} files retention had left to delete")
        if collected.errors:
            report.unrepaired.append(f"{collected.errors} files or directories retention is deleting could not be "
                                     "handled (see the log); they stay listed for deletion")
    report.duration_s = time.monotonic() - started
    return report


def _is_garbage(rel: str, garbage: dict[str, Ranges]) -> bool:
    """Is this file (segments/CAMERA/DAY/HOUR/<start_us>.mp4) inside a range retention is deleting?"""
    parts = PurePosixPath(rel).parts
    stem = parts[4].removesuffix(".mp4") if len(parts) == 5 else ""
    if not (stem.isascii() and stem.isdigit()):
        return False
    ranges = garbage.get(parts[1])
    return ranges is not None and int(stem) in ranges


def mostly_elsewhere(missing: int, rows: int) -> bool:
    """Are so many rows' segments missing that the segments are more likely elsewhere than gone?"""
    return missing >= MASS_MISSING_MIN and missing * 2 > rows


async def _repair(segments: SegmentStore, conn: aiosqlite.Connection, report: CheckReport,
                  listed: dict[str, StoredSegment], drop_missing: bool = False) -> None:
    by_kind: dict[str, list[Problem]] = {k: [p for p in report.problems if p.kind == k] for k in KINDS}
    if not drop_missing and mostly_elsewhere(len(by_kind["missing"]), report.rows):
        report.unrepaired.append(
            f"{len(by_kind['missing'])} of {report.rows} rows name a segment {segments.description} does not hold: "
            "so many that the segments are more likely elsewhere (a wrong --root or --segments, a disk or bucket "
            "not mounted) than gone, so their rows were kept. Check where the store keeps its segments; if that "
            "footage really is gone, run check --repair --drop-missing")
        by_kind["missing"] = []
    # Rows first, committed, and only then their files: never a row without its file.
    doomed = by_kind["missing"] + by_kind["size"] + by_kind["sha256"]
    for i in range(0, len(doomed), BATCH_ROWS):
        ids = [p.row_id for p in doomed[i:i + BATCH_ROWS] if p.row_id is not None]
        await coverage_marks.mark_ids(conn, ids)
        await conn.execute(f"DELETE FROM segments WHERE id IN ({','.join('?' * len(ids))})", ids)
        await conn.commit()
    report.repaired += [f"removed the row of missing {p.path}" for p in by_kind["missing"]]
    for p in by_kind["size"] + by_kind["sha256"]:
        await _quarantine(segments, conn, p.path, f"{p.kind} mismatch", report)
    for p in by_kind["temporary"]:
        if await segments.delete_many([str(name_of(p.path))]):
            report.unrepaired.append(f"could not delete temporary {p.path} (see the log)")
        else:
            report.repaired.append(f"deleted temporary {p.path}")
    for p in by_kind["orphan"]:
        await _reindex(segments, conn, listed[str(name_of(p.path))], report)


async def _quarantine(segments: SegmentStore, conn: aiosqlite.Connection, rel: str, why: str,
                      report: CheckReport) -> None:
    """Move a segment no row names out of the way. Under the hour's fence (store/index/fence.py) and only if still
    no row names it: a store sharing the index may have indexed these very bytes since (a resend whose PUT found
    them), and moving them would leave its row without its segment."""
    name = str(name_of(rel))
    try:
        async with removal_fence(conn, hour_of(name)):
            if await _row_names(conn, rel):
                report.repaired.append(f"{rel} was indexed meanwhile by a running store; left as it is")
                return
            dest = await segments.quarantine(name)
        report.repaired.append(f"{why}: moved {rel} to {dest} and removed its row")
    except OSError as exc:
        report.unrepaired.append(f"{why}: could not move {rel} to quarantine: {exc}")


async def _row_names(conn: aiosqlite.Connection, rel: str) -> bool:
    """Does a ``segments`` row name this path (``segments/CAMERA/DAY/HOUR/<start_us>.mp4``) now?"""
    camera, start = PurePosixPath(rel).parts[1], start_of(rel)
    if start is None:
        return False
    async with conn.execute("SELECT 1 FROM segments WHERE camera = ? AND start_us = ? AND path = ?",
                            (camera, start, rel)) as cur:
        return await cur.fetchone() is not None


async def _reindex(segments: SegmentStore, conn: aiosqlite.Connection, entry: StoredSegment,
                   report: CheckReport) -> None:
    rel = row_path(entry.name)
    try:
        row = await asyncio.to_thread(describe_segment, segments, entry)
    except (ValueError, FileNotFoundError) as exc:  # SegmentFileError, or metadata that disagrees with the path
        await _quarantine(segments, conn, rel, f"not re-indexable ({exc})", report)
        return
    still_stored, clash = True, None
    try:
        async with transaction(conn):
            # Under the hour's fence (store/index/fence.py): no store sharing the index commits this segment's row
            # or deletes its object (retention: it may have listed it since) until this commits.
            await hold_exclusively(conn, hour_of(entry.name))
            still_stored = await segments.exists(entry.name)
            clash = await _indexed_at(conn, row)
            if still_stored and clash is None:
                await insert_row(conn, row)
    except Exception:  # UNIQUE (camera, start_us): a writer the fence does not keep out committed it since the lookup
        clash = await _indexed_at(conn, row)
        if clash is None:
            raise
    if not still_stored:
        report.repaired.append(f"{rel} was deleted meanwhile (retention of a store sharing the index); not indexed")
        return
    if clash is None:
        report.repaired.append(f"re-indexed orphan {rel} ({row['camera']}, {row['frames']} frames)")
        return
    if clash[0] == rel:
        # A store sharing the index committed its row after the listing (its PUT comes before its row): it is
        # indexed, and moving it away would leave that row without its segment.
        report.repaired.append(f"{rel} was indexed meanwhile by a running store; left as it is")
        return
    await _quarantine(segments, conn, rel, f"the index already has {row['camera']}-{row['start_us']} at {clash[0]}",
                      report)


async def _indexed_at(conn: aiosqlite.Connection, row: dict[str, Any]) -> tuple[Any, ...] | None:
    """The path of the row the index has for this segment's camera and start, if any."""
    async with conn.execute("SELECT path FROM segments WHERE camera = ? AND start_us = ?",
                            (row["camera"], row["start_us"])) as cur:
        found = await cur.fetchone()
    return None if found is None else tuple(found)


def describe_segment(segments: SegmentStore, entry: StoredSegment) -> dict[str, Any]:
    """Worker thread: a ``segments`` row for a stored segment, from the MP4's own metadata.

    Raises ValueError (``SegmentFileError`` among them) if it cannot be read or belongs elsewhere.
    """
    from store.media.segment_file import read_segment_metadata  # loads PyAV: only when re-indexing

    with segments.open_local(entry.name) as path:  # whole: it is hashed too (a ranged read would fetch it all)
        info = read_segment_metadata(path)
        expected = segment_name(info.camera, info.start_us)
        if expected != entry.name:
            raise ValueError(f"it says it is {info.camera}-{info.start_us}, which belongs at {row_path(expected)}")
        sha256 = file_sha256(path)
        shape = shape_of_path(path, entry.name)  # None: NULL columns, filled by playback
    shape_values = (None,) * len(SHAPE_COLUMNS) if shape is None else shape.values()
    return {"camera": info.camera, "node": info.node or UNKNOWN_NODE, "start_us": info.start_us,
            "end_us": info.end_us, "frames": info.frames, "size_bytes": entry.size, "sha256": sha256,
            "codec": "h264", "width_px": info.width, "height_px": info.height, "path": row_path(entry.name),
            "received_us": entry.written_us,  # when the store wrote it: the nearest to "indexed at"
            **dict(zip(SHAPE_COLUMNS, shape_values, strict=True))}


async def insert_row(conn: aiosqlite.Connection, row: dict[str, Any]) -> None:
    """Insert one ``segments`` row (not committed). Leaves ``nodes`` alone: re-indexing is not a sighting."""
    cols = ", ".join(row)
    await conn.execute(f"INSERT INTO segments ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    await coverage_marks.mark(conn, [(str(row["camera"]), int(row["start_us"]), int(row["end_us"]))])
