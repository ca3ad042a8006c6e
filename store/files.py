"""File-side helpers for retention and check: removing, quarantining and listing segment files.

All of these do blocking syscalls; callers run them on a worker thread, a batch per call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from shared.fsutil import TEMP_MARK, ensure_dir, fsync_dir

log = logging.getLogger(__name__)

SEGMENTS_DIR = "segments"
QUARANTINE_DIR = "quarantine"


def safe_relpath(path: str) -> bool:
    """True if ``path`` (as stored in a row) stays below ROOT/segments: only such files are ever touched."""
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and len(p.parts) > 1 and p.parts[0] == SEGMENTS_DIR


def unlink_segments(root: Path, paths: list[str]) -> int:
    """Delete these segment files and the hour/day directories they leave empty.

    Returns how many could not be removed. A file already gone is fine: its row is what mattered.
    No fsync: an unlink lost to a power cut only brings back an orphan, which check --repair removes.
    """
    errors = 0
    parents: set[Path] = set()
    for rel in paths:
        if not safe_relpath(rel):
            log.error("not deleting %r: the index row points outside ROOT/segments", rel)
            errors += 1
            continue
        path = root / rel
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("could not delete %s (its row is gone; check --repair removes it later): %s", path, exc)
            errors += 1
        parents.add(path.parent)
    remove_empty_dirs(root, parents)
    return errors


def remove_empty_dirs(root: Path, hour_dirs: set[Path]) -> None:
    """rmdir each hour directory, then its day directory, if empty; never the camera directory."""
    segments = root / SEGMENTS_DIR
    for hour in sorted(hour_dirs):
        # segments/CAMERA/DAY/HOUR: only the last two levels go.
        if hour.parent.parent.parent != segments:
            continue
        for d in (hour, hour.parent):
            try:
                os.rmdir(d)
            except OSError:
                break  # not empty (or already gone): leave it and its parent


def quarantine(root: Path, rel: str) -> Path:
    """Move ROOT/<rel> to ROOT/quarantine/<rel> (never overwriting), durably; returns the new path."""
    src = root / rel
    dest = root / QUARANTINE_DIR / PurePosixPath(rel).relative_to(SEGMENTS_DIR)
    n = 0
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{src.name}.{n}")
    ensure_dir(dest.parent)
    os.replace(src, dest)
    fsync_dir(dest.parent)
    fsync_dir(src.parent)
    return dest


def walk_segment_files(root: Path) -> Iterator[tuple[str, int]]:
    """Every regular file under ROOT/segments as (path relative to ROOT, size), in no set order."""
    segments = root / SEGMENTS_DIR
    stack = [segments]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                rel = Path(entry.path).relative_to(root).as_posix()
                yield rel, entry.stat(follow_symlinks=False).st_size


def is_temporary(rel: str) -> bool:
    return TEMP_MARK in PurePosixPath(rel).name
