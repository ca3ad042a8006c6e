"""Removes what abandoned work left in ROOT/cache while the store runs, not only at start.

A request that ends removes its own files (store/serve/media_requests.py); this
sweeps what that could not: clips of a store that crashed mid-export, and the
half-written temporaries of thumbnails (``write_atomic``) a crash left. A file is
removed once it is older than ``max_age_s`` (by modification time: an export
being written touches its file all the time) and not named as in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path

from shared.fsutil import TEMP_MARK

log = logging.getLogger(__name__)

JANITOR_EVERY_S = 60.0
LEFTOVER_AGE_S = 300.0  # five minutes: far longer than any write takes between touches of its file


def sweep_exports(directory: Path, in_use: Collection[str], max_age_s: float, now: float) -> list[Path]:
    """Delete files in the exports directory older than ``max_age_s`` unless a name in ``in_use`` starts theirs
    (a clip being written has the clip's name plus a temporary suffix)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if any(entry.name.startswith(name) for name in in_use):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def sweep_temporaries(directory: Path, max_age_s: float, now: float) -> list[Path]:
    """Delete half-written temporaries (``TEMP_MARK`` in the name) below ``directory`` older than ``max_age_s``."""
    removed: list[Path] = []
    for parent, _dirs, names in os.walk(directory):
        for name in names:
            if TEMP_MARK in name:
                path = Path(parent) / name
                with contextlib.suppress(FileNotFoundError):
                    if now - path.stat().st_mtime > max_age_s:
                        path.unlink()
                        removed.append(path)
    return removed


class CacheJanitor:
    """Every ``every_s``, sweeps ROOT/cache/exports and the thumbnail temporaries, in a worker thread."""

    def __init__(self, exports: Path, thumbs: Path, in_use: Callable[[], Collection[str]] = frozenset,
                 max_age_s: float = LEFTOVER_AGE_S, every_s: float = JANITOR_EVERY_S) -> None:
        self.exports = exports
        self.thumbs = thumbs
        self.in_use = in_use  # names of clips requests are writing or sending now (read on the event loop)
        self.max_age_s = max_age_s
        self.every_s = every_s
        self.removed = 0  # files removed since start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cache-janitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self) -> list[Path]:
        in_use = frozenset(self.in_use())  # a snapshot taken on the loop, where requests change it
        now = time.time()
        removed = await asyncio.to_thread(sweep_exports, self.exports, in_use, self.max_age_s, now)
        removed += await asyncio.to_thread(sweep_temporaries, self.thumbs, self.max_age_s, now)
        self.removed += len(removed)
        for path in removed:
            log.warning("removed a leftover of abandoned work: %s", path)
        return removed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.sweep()
            except OSError as exc:  # a permissions problem must not end the sweeps
                log.error("cache janitor: %s", exc)
