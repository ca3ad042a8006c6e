"""Durable file writes: temporary name, fsync, rename, fsync of the directory.

After ``write_atomic`` returns, the file exists under its final name with all
its bytes, even across a power cut; before, it does not exist at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry into its parent, so a
    file written inside survives a power cut together with the directories leading to it."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        fsync_dir(d.parent)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file that appears under ``path`` whole, or not at all: written under a temporary name
    (which ``remove_temporaries`` sweeps after a crash), fsynced, renamed, directory fsynced."""
    ensure_dir(path.parent)
    temp = path.with_name(f"{path.name}{TEMP_MARK}{secrets.token_hex(4)}")
    try:
        with open(temp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    with atomic_file(path) as f:
        f.write(data)


def remove_temporaries(root: Path) -> list[Path]:
    """Delete files a crash left half-written; returns what was removed."""
    removed = []
    if root.exists():
        for p in root.rglob(f"*{TEMP_MARK}*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
