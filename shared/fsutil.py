"""Durable file writes: temporary name, fsync, rename, fsync of the directory.

After ``write_atomic`` returns, the file exists under its final name with all
its bytes, even across a power cut; before, it does not exist at all.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    ensure_dir(path.parent)
    temp = path.with_name(f"{path.name}{TEMP_MARK}{secrets.token_hex(4)}")
    try:
        with open(temp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_temporaries(root: Path) -> list[Path]:
    """Delete files a crash left half-written; returns what was removed."""
    removed = []
    if root.exists():
        for p in root.rglob(f"*{TEMP_MARK}*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
