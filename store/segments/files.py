"""The file backend: segments as files in a directory, by default ``ROOT/segments`` (docs/storage.md, S1-S8).

The layout is the segment name below the directory. A write is durable (``write_atomic``: temporary name,
fsync, rename, directory fsync) before ``put`` returns. The blocking work happens in the helpers of
``store/media/files.py``, looked up on that module at each call (tests put a power cut or a failing disk in
their place), on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from shared import fsutil
from shared.fsutil import write_atomic
from store.media import files as media_files
from store.segments import StoredSegment

# Writes have threads of their own: thumbnails and clip exports use the default pool, and a viewer exporting
# footage must not make the nodes' uploads wait for a thread (their acks time out at 30 s).
WRITE_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="segment-write")


class FileSegments:
    """Segments in ``root / base`` (``base`` one directory name): ``FileSegments(ROOT)`` is the default layout."""

    def __init__(self, root: Path, base: str = media_files.SEGMENTS_DIR) -> None:
        if "/" in base or base in ("", ".", ".."):
            raise ValueError(f"the segments directory must be one directory name below its parent, got {base!r}")
        self.root = Path(root)
        self.base = base
        self.directory = self.root / base
        # The helpers take the directory's name only when it is not the default: their callers (and the
        # stand-ins tests put in their place) know the two-argument form.
        self._base_arg: tuple[str, ...] = () if base == media_files.SEGMENTS_DIR else (base,)

    @classmethod
    def at(cls, directory: Path) -> FileSegments:
        """The backend for ``--segments file:DIR``."""
        directory = Path(directory).absolute()
        return cls(directory.parent, directory.name)

    @property
    def description(self) -> str:
        return str(self.directory)

    @property
    def disk_path(self) -> Path:
        # The default measures ROOT, as the store always did; a directory given with file:DIR, itself
        # (it may be a mount of its own).
        return self.root if not self._base_arg else self.directory

    async def start(self) -> None:
        if self._base_arg:  # a directory of its own (file:DIR): there from the start, as ROOT is
            await asyncio.to_thread(fsutil.ensure_dir, self.directory)

    async def close(self) -> None:
        return None

    async def remove_temporaries(self) -> list[str]:
        return [str(p) for p in await asyncio.to_thread(fsutil.remove_temporaries, self.directory)]

    def path(self, name: str) -> Path:
        return self.directory / name

    def rel(self, name: str) -> str:
        """The name as a path relative to ``root`` (what the helpers of store/media/files.py take)."""
        return f"{self.base}/{name}"

    async def put(self, name: str, data: memoryview | bytes, sha256_hex: str) -> None:
        # The caller hashed the bytes; a local file system has nothing to verify them with.
        await asyncio.get_running_loop().run_in_executor(WRITE_POOL, partial(write_atomic, self.path(name), data))

    async def exists(self, name: str) -> bool:
        return await asyncio.to_thread(self.path(name).is_file)

    @contextlib.contextmanager
    def open_local(self, name: str) -> Iterator[Path]:
        yield self.path(name)  # no stat: the reader's open says whether it is there, as it always did

    def open_media(self, name: str) -> contextlib.AbstractContextManager[Path]:
        return self.open_local(name)  # the file itself: FFmpeg reads it directly, as it always did

    async def delete_many(self, names: list[str]) -> int:
        rels = [self.rel(n) for n in names]
        return await asyncio.to_thread(media_files.unlink_segments, self.root, rels, *self._base_arg)

    async def sync_deleted(self, hours: list[str]) -> None:
        await asyncio.to_thread(media_files.sync_directories, self.root, [self.rel(h) for h in hours],
                                *self._base_arg)

    async def hours_between(self, camera: str, spans: list[tuple[int, int]]) -> dict[str, list[int]]:
        found = await asyncio.to_thread(media_files.hour_dirs_between, self.root, camera, spans, self.base)
        cut = len(self.base) + 1
        return {rel[cut:]: owners for rel, owners in found.items()}

    async def starts_in_hour(self, hour: str) -> list[int]:
        return await asyncio.to_thread(media_files.list_segment_starts, self.directory / hour)

    async def list_all(self) -> AsyncIterator[StoredSegment]:
        # The walk is the one full pass over the disk; fine for the admin commands that ask for it.
        found = await asyncio.to_thread(lambda: list(media_files.walk_segment_files(self.root, self.base)))
        cut = len(self.base) + 1
        for rel, size, mtime_us in found:
            yield StoredSegment(rel[cut:], size, mtime_us)

    async def quarantine(self, name: str) -> str:
        dest = await asyncio.to_thread(media_files.quarantine, self.root, self.rel(name), self.base)
        return str(dest.relative_to(self.root)) if dest.is_relative_to(self.root) else str(dest)
