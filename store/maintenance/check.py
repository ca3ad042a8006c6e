"""``sht store check``: does the index agree with the files under ROOT/segments?

Finds rows whose file is missing, ``.mp4`` files no row points at (orphans), size and
(with ``deep``) SHA-256 mismatches, and temporaries a crash left. ``repair``:

- a row whose file is missing: the row goes;
- a file whose size or hash disagrees with its row: the row goes (committed), then the
  file moves to ROOT/quarantine/ (never deleted: it may be the only copy of something);
- an orphan: re-indexed from the metadata inside the MP4 (store/media/segment_file.py), or
  quarantined if it cannot be read or does not belong at its path;
- a temporary: deleted.

Repairs keep the store's invariant: a row is only ever inserted for a complete file and
deleted before its file is moved.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import aiosqlite

from store.index import coverage_marks
from store.index.db import Index
from store.ingest.writer import segment_relpath
from store.maintenance.garbage import Ranges, collect, pending_ranges
from store.media.files import is_temporary, quarantine, safe_relpath, walk_segment_files

BATCH_ROWS = 2000
UNKNOWN_NODE = "unknown"  # node of a file re-indexed without its embedded metadata
KINDS = ("missing", "size", "sha256", "orphan", "temporary")


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


def _check_rows(root: Path, rows: list[tuple[int, str, int, str]], deep: bool) -> list[Problem]:
    """Worker thread: stat (and hash) one batch of rows' files."""
    problems = []
    for row_id, rel, size, sha in rows:
        if not safe_relpath(rel):
            problems.append(Problem("missing", rel, "the row's path is outside ROOT/segments", row_id))
            continue
        path = root / rel
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append(Problem("missing", rel, "the row's file does not exist", row_id))
            continue
        if actual != size:
            problems.append(Problem("size", rel, f"file has {actual} bytes, the row says {size}", row_id))
        elif deep and (digest := file_sha256(path)) != sha:
            problems.append(Problem("sha256", rel, f"file hashes to {digest[:16]}…, the row says {sha[:16]}…",
                                    row_id))
    return problems


async def check_store(root: Path, index: Index, *, deep: bool = False, repair: bool = False) -> CheckReport:
    """Compare the index with the files; with ``repair``, fix what was found (run with the store stopped)."""
    started = time.monotonic()
    report = CheckReport(deep=deep)
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
        report.problems += await asyncio.to_thread(_check_rows, root, rows, deep)
        after = rows[-1][0]
    # Files retention still has to delete are neither orphans nor to be re-indexed.
    garbage = await pending_ranges(index.conn)
    # The walk is the one full pass over the disk; fine for an admin command.
    files = await asyncio.to_thread(lambda: list(walk_segment_files(root)))
    for rel, _size in sorted(files):
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
        await _repair(root, index.conn, report)
    if repair and report.pending_deletion:
        collected = await collect(index.conn, root)
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


async def _repair(root: Path, conn: aiosqlite.Connection, report: CheckReport) -> None:
    by_kind: dict[str, list[Problem]] = {k: [p for p in report.problems if p.kind == k] for k in KINDS}
    # Rows first, committed, and only then their files: never a row without its file.
    doomed = by_kind["missing"] + by_kind["size"] + by_kind["sha256"]
    for i in range(0, len(doomed), BATCH_ROWS):
        ids = [p.row_id for p in doomed[i:i + BATCH_ROWS] if p.row_id is not None]
        await coverage_marks.mark_ids(conn, ids)
        await conn.execute(f"DELETE FROM segments WHERE id IN ({','.join('?' * len(ids))})", ids)
        await conn.commit()
    report.repaired += [f"removed the row of missing {p.path}" for p in by_kind["missing"]]
    for p in by_kind["size"] + by_kind["sha256"]:
        await _quarantine(root, p.path, f"{p.kind} mismatch", report)
    for p in by_kind["temporary"]:
        try:
            await asyncio.to_thread((root / p.path).unlink, missing_ok=True)
            report.repaired.append(f"deleted temporary {p.path}")
        except OSError as exc:
            report.unrepaired.append(f"could not delete temporary {p.path}: {exc}")
    for p in by_kind["orphan"]:
        await _reindex(root, conn, p.path, report)


async def _quarantine(root: Path, rel: str, why: str, report: CheckReport) -> None:
    try:
        dest = await asyncio.to_thread(quarantine, root, rel)
        report.repaired.append(f"{why}: moved {rel} to {dest.relative_to(root)} and removed its row")
    except OSError as exc:
        report.unrepaired.append(f"{why}: could not move {rel} to quarantine: {exc}")


async def _reindex(root: Path, conn: aiosqlite.Connection, rel: str, report: CheckReport) -> None:
    try:
        row = await asyncio.to_thread(describe_file, root, rel)
    except ValueError as exc:  # SegmentFileError, or metadata that disagrees with the path
        await _quarantine(root, rel, f"not re-indexable ({exc})", report)
        return
    async with conn.execute("SELECT path FROM segments WHERE camera = ? AND start_us = ?",
                            (row["camera"], row["start_us"])) as cur:
        clash = await cur.fetchone()
    if clash is not None:
        await _quarantine(root, rel, f"the index already has {row['camera']}-{row['start_us']} at {clash[0]}", report)
        return
    await insert_row(conn, row)
    await conn.commit()
    report.repaired.append(f"re-indexed orphan {rel} ({row['camera']}, {row['frames']} frames)")


def describe_file(root: Path, rel: str) -> dict[str, Any]:
    """Worker thread: a ``segments`` row for the file at ROOT/<rel>, from the MP4's own metadata.

    Raises ValueError (``SegmentFileError`` among them) if it cannot be read or belongs elsewhere.
    """
    from store.media.segment_file import read_segment_metadata  # loads PyAV: only when re-indexing

    path = root / rel
    info = read_segment_metadata(path)
    expected = segment_relpath(info.camera, info.start_us).as_posix()
    if expected != rel:
        raise ValueError(f"it says it is {info.camera}-{info.start_us}, which belongs at {expected}")
    st = os.stat(path)
    return {"camera": info.camera, "node": info.node or UNKNOWN_NODE, "start_us": info.start_us,
            "end_us": info.end_us, "frames": info.frames, "size_bytes": st.st_size, "sha256": file_sha256(path),
            "codec": "h264", "width_px": info.width, "height_px": info.height, "path": rel,
            "received_us": st.st_mtime_ns // 1000}  # when the store wrote it: the nearest to "indexed at"


async def insert_row(conn: aiosqlite.Connection, row: dict[str, Any]) -> None:
    """Insert one ``segments`` row (not committed). Leaves ``nodes`` alone: re-indexing is not a sighting."""
    cols = ", ".join(row)
    await conn.execute(f"INSERT INTO segments ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    await coverage_marks.mark(conn, [(str(row["camera"]), int(row["start_us"]), int(row["end_us"]))])
