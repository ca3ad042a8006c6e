"""Local copies of remote segments, for the readers that want a file (PyAV): bounded by bytes, least recently
used evicted first, an entry being read never evicted under its reader.

Whole objects: a 10 s segment is a few MB, and a thumbnail, an export or a re-index reads most of it anyway.
Blocking and thread-safe: called from the worker threads that decode and remux.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from shared.fsutil import TEMP_MARK

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024  # about 100 segments of 10 s at 2 Mbit/s


class SegmentCache:
    def __init__(self, directory: Path, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # name -> bytes, least recently used first
        self._pins: dict[str, int] = {}
        self.bytes = 0
        self.hits = 0
        self.fetches = 0

    def clear(self) -> None:
        """Start empty (what an earlier run left is only cache)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def path_of(self, name: str) -> Path:
        """Where ``name``'s copy lives: its own layout when it is a plain relative name (so readers that read
        camera and start from a path still can), a hash of it otherwise (never outside the directory)."""
        p = PurePosixPath(name)
        if name and not p.is_absolute() and all(part not in ("", ".", "..") for part in name.split("/")):
            return self.directory / p
        return self.directory / "_" / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".mp4")

    @contextlib.contextmanager
    def hold(self, name: str, fetch: Callable[[], bytes]) -> Iterator[Path]:
        """A local copy of ``name`` while the block runs, from ``fetch()`` (its bytes) when not cached."""
        path = self.path_of(name)
        with self._lock:
            cached = name in self._entries
            if cached:
                self._entries.move_to_end(name)
                self.hits += 1
            self._pins[name] = self._pins.get(name, 0) + 1
        try:
            if not cached:
                self._store(name, path, fetch())
            yield path
        finally:
            with self._lock:
                left = self._pins[name] - 1
                if left:
                    self._pins[name] = left
                else:
                    del self._pins[name]
            self._evict()

    def _store(self, name: str, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}{TEMP_MARK}{secrets.token_hex(4)}")
        temp.write_bytes(data)  # no fsync: a cache, cleared at every start
        os.replace(temp, path)  # two threads fetching one name: the same bytes, the last rename wins
        with self._lock:
            self.fetches += 1
            self.bytes += len(data) - self._entries.pop(name, 0)
            self._entries[name] = len(data)

    def _evict(self) -> None:
        # Unlinks under the lock: a name is either pinned by a reader or gone, never unlinked under one.
        with self._lock:
            for name in list(self._entries):
                if self.bytes <= self.max_bytes:
                    break
                if name not in self._pins:  # one being read goes once its reader is done
                    self._drop(name)

    def forget(self, names: list[str]) -> None:
        """Drop the copies of deleted segments."""
        with self._lock:
            for name in names:
                if name in self._entries and name not in self._pins:
                    self._drop(name)

    def _drop(self, name: str) -> None:
        self.bytes -= self._entries.pop(name)
        self.path_of(name).unlink(missing_ok=True)
