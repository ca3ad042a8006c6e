"""File-side helpers for retention and check: removing, quarantining and listing segment files.

All of these do blocking syscalls; callers run them on a worker thread, a batch per call.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from shared.fsutil import TEMP_MARK, ensure_dir, fsync_dir

log = logging.getLogger(__name__)

SEGMENTS_DIR = "segments"
# CAMERA/YYYY-MM-DD/HH/<start_us>.mp4 with a valid camera id, below the segments directory: always a safe_relpath.
_STORE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}/[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9]{2}/[0-9]+\.mp4")
QUARANTINE_DIR = "quarantine"


def safe_relpath(path: str, base: str = SEGMENTS_DIR) -> bool:
    """True if ``path`` (as stored in a row) stays below ROOT/``base``: only such files are ever touched."""
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and len(p.parts) > 1 and p.parts[0] == base


def unlink_segments(root: Path, paths: list[str], base: str = SEGMENTS_DIR) -> int:
    """Delete these segment files (paths relative to ``root``, below ``root/base``) and the hour/day directories
    they leave empty.

    Returns how many could not be removed. A file already gone is fine: its row is what mattered.
    No fsync here: the caller syncs the directories before it forgets the files (store/maintenance/garbage.py).
    """
    errors = 0
    root_text = os.fspath(root).rstrip("/")  # a root of "/" must not give "//segments"
    parents: set[Path] = set()
    hour_dirs: set[str] = set()
    prefix = base + "/"
    for rel in paths:
        path: str | Path
        if rel.startswith(prefix) and _STORE_NAME.fullmatch(rel, len(prefix)):
            # The store's own names (store.ingest.writer.segment_relpath), the usual case: plain strings,
            # as a Path per file costs more than the unlink itself (a day at 100 cameras is 864,000).
            path = f"{root_text}/{rel}"
            hour_dirs.add(path.rpartition("/")[0])
        elif safe_relpath(rel, base):
            path = root / rel
            parents.add(path.parent)
        else:
            log.error("not deleting %r: the index row points outside ROOT/%s", rel, base)
            errors += 1
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("could not delete %s (its row is gone; it stays listed for deletion and is tried again "
                      "at the next collection): %s", path, exc)
            errors += 1
    parents.update(Path(d) for d in hour_dirs)
    remove_empty_dirs(root, parents, base)
    return errors


def hour_dirs_between(root: Path, camera: str, spans: list[tuple[int, int]],
                      base: str = SEGMENTS_DIR) -> dict[str, list[int]]:
    """The hour directories (relative to ROOT) of one camera that exist and may hold start times in the
    spans [from_us, to_us] (UTC), each with the indexes of the spans it touches: the camera's directory
    listed once, a day's only if a span reaches it; never a walk of the camera."""
    keys = [(_hour_key(lo), _hour_key(hi)) for lo, hi in spans]
    below = f"{base}/{camera}"
    found: dict[str, list[int]] = {}
    for day in _sorted_names(root / below):
        if not any(lo[:10] <= day <= hi[:10] for lo, hi in keys):
            continue
        for hour in _sorted_names(root / below / day):
            owners = [k for k, (lo, hi) in enumerate(keys) if lo <= f"{day}/{hour}" <= hi]
            if owners:
                found[f"{below}/{day}/{hour}"] = owners
    return found


def _hour_key(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1e6, tz=UTC).strftime("%Y-%m-%d/%H")  # as segment_relpath names it


def list_segment_starts(directory: Path) -> list[int]:
    """Start times of the segment files (``<start_us>.mp4``) in one hour directory; temporaries and other
    names skipped. A directory that is gone holds nothing; other errors (permissions, I/O) raise."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [int(stem) for name in names if name.endswith(".mp4") and _is_decimal(stem := name[:-4])]


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone takes "²", which int() refuses


def sync_directories(root: Path, hour_dirs: list[str], base: str = SEGMENTS_DIR) -> None:
    """fsync each hour directory, or the day or camera directory above it once it is gone, so unlinks and
    rmdirs in them are on disk."""
    done: set[Path] = set()
    for rel in hour_dirs:
        d = root / rel
        while not d.is_dir() and d.parent != root / base:
            d = d.parent
        if d not in done and d.is_dir():
            fsync_dir(d)
            done.add(d)


def _sorted_names(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_empty_dirs(root: Path, hour_dirs: set[Path], base: str = SEGMENTS_DIR) -> None:
    """rmdir each hour directory, then its day directory, if empty; never the camera directory."""
    segments = root / base
    for hour in sorted(hour_dirs):
        # segments/CAMERA/DAY/HOUR: only the last two levels go.
        if hour.parent.parent.parent != segments:
            continue
        for d in (hour, hour.parent):
            try:
                os.rmdir(d)
            except OSError:
                break  # not empty (or already gone): leave it and its parent


def quarantine(root: Path, rel: str, base: str = SEGMENTS_DIR) -> Path:
    """Move ROOT/<rel> to ROOT/quarantine/<rel below base> (never overwriting), durably; returns the new path."""
    src = root / rel
    dest = root / QUARANTINE_DIR / PurePosixPath(rel).relative_to(base)
    n = 0
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{src.name}.{n}")
    ensure_dir(dest.parent)
    os.replace(src, dest)
    fsync_dir(dest.parent)
    fsync_dir(src.parent)
    return dest


def walk_segment_files(root: Path, base: str = SEGMENTS_DIR) -> Iterator[tuple[str, int, int]]:
    """Every regular file under ROOT/``base`` as (path relative to ROOT, size, mtime in µs), in no set order."""
    segments = root / base
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
                st = entry.stat(follow_symlinks=False)
                yield rel, st.st_size, st.st_mtime_ns // 1000


def is_temporary(rel: str) -> bool:
    return TEMP_MARK in PurePosixPath(rel).name
