"""The ``/recordings`` files a store has laid out: made from index rows (``stream_layout``), kept, and read.

A clip is computed once per (camera, from, to) and kept (``LAYOUTS``, ``LAYOUT_CHUNKS``: the least recently used
dropped; one an answer being sent still holds is found again), so the MP4 and the JSON a client reads, and every
Range request a player makes, describe the same bytes even while footage is still arriving.

Making one costs a query, a loop over the rows and the tables of the segments the range cuts (and of rows whose
shape is not known yet: those shapes are then written back, so each older segment is read this way once). The
``moov``'s big tables are written while the answer is sent (``stream_head.Head``), from the table cache.
Nothing here runs blocking work on the event loop: tables, layouts and reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import numpy as np

from store.index.db import transaction
from store.index.shapes import fill_shapes
from store.index.timeline import MAX_SEGMENT_US
from store.playback.segment_shape import SHAPE_COLUMNS, SegmentShape, shape_from_row, shape_of
from store.playback.segment_tables import SegmentTable, TableCache, open_segment
from store.playback.stream_head import ChunkMismatch, Head
from store.playback.stream_layout import Plan, Row, plan
from store.segments import SegmentStore, name_of
from store.serve.media_requests import in_worker

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024  # one read of a segment or of the head, and the most of the body held at once
FIRST_HEAD_BYTES = 64 * 1024  # the first read of the head (the next ones 4 times larger, up to READ_BYTES)
LAYOUTS = 16  # clips kept, the least recently used dropped first ...
LAYOUT_CHUNKS = 100_000  # ... and while they hold more chunks than this (~300 bytes each; a day is 8,640)
LAYOUTS_AT_ONCE = 2  # clips being laid out at once (worker threads)
REMOTE_READS = 8  # sample tables read at once from remote storage (S3: each a ranged GET or two)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clip:
    """A laid-out file: its plan and head, and the segments (name, size, start_us) its chunks come from."""

    def __init__(self, camera: str, from_us: int, to_us: int, layout: Plan,
                 segments: Sequence[tuple[str, int, int]]) -> None:
        self.camera, self.from_us, self.to_us = camera, from_us, to_us
        self.plan = layout
        self.head = Head(layout)
        self.segments = tuple(segments)
        self.etag = _etag(self)

    @property
    def total(self) -> int:
        return self.head.total

    def sidecar(self) -> dict[str, Any]:
        p = self.plan
        ts = p.track.timescale
        return {"camera": self.camera, "from": iso(self.from_us), "to": iso(self.to_us), "start": iso(p.start_us),
                "duration_s": round(p.duration / ts, 6), "bytes": self.total, "frames": p.frames,
                "pieces": [{"media_s": round(q.media_s, 6), "start": iso(q.start_us), "end": iso(q.end_us),
                            "frames": q.frames} for q in p.pieces],
                "gaps": [{"start": iso(a), "end": iso(b)} for a, b in p.gaps],
                "truncated": p.truncated}


def _etag(clip: Clip) -> str:
    """A strong validator of the file's bytes: they follow from the segments (immutable files), which samples of
    each are taken, and the track, so an equal tag is an equal file even once the clip was dropped and made
    again; a player's ``If-Range`` with another tag gets the whole new file, not a mix (RFC 9110 §13.1.5)."""
    h = hashlib.blake2b(digest_size=12)
    p = clip.plan
    h.update(f"{p.track.codec} {p.track.timescale} {clip.head.total}".encode())
    for c in p.chunks:
        name, size, _ = clip.segments[c.key]
        h.update(f"|{name} {size} {c.first} {c.end} {c.nbytes}".encode())
    return f'"{h.hexdigest()}"'


class Clips:
    """Clips made and kept. ``index`` is the store's Index; ``segments()`` its segment storage now (the store
    sets it after start)."""

    def __init__(self, index: Any, segments: Any, tables: TableCache | None = None) -> None:
        self.index = index
        self._segments = segments
        self.tables = tables or TableCache()
        self._clips: OrderedDict[tuple[str, int, int], Clip] = OrderedDict()
        # Every clip still held, by the cache or by an answer being sent (a player's open connection).
        self._held: weakref.WeakValueDictionary[tuple[str, int, int], Clip] = weakref.WeakValueDictionary()
        self._building: dict[tuple[str, int, int], asyncio.Task[Clip]] = {}
        self._layouts = asyncio.Semaphore(LAYOUTS_AT_ONCE)

    @property
    def segments(self) -> SegmentStore:
        return self._segments()  # type: ignore[no-any-return]

    async def get(self, camera: str, from_us: int, to_us: int) -> Clip:
        """The clip, made if not kept; ``NothingRecorded`` (none of the rows has a frame in the range), storage
        and table errors as they come."""
        key = (camera, from_us, to_us)
        if (clip := self._clips.get(key)) is not None:
            self._clips.move_to_end(key)
            return clip
        if (clip := self._held.get(key)) is not None:
            self._keep(key, clip)
            return clip
        building = self._building.get(key)
        if building is None:  # one build per clip: a player's first requests arrive together
            building = asyncio.create_task(self._build(camera, from_us, to_us), name="recordings-layout")
            self._building[key] = building
            building.add_done_callback(functools.partial(self._built, key))
        return await asyncio.shield(building)  # a request that goes away leaves the build to finish for the next

    async def close(self) -> None:
        """Cancel the layouts being made (before the index closes under their queries and table reads)."""
        building = list(self._building.values())
        for task in building:
            task.cancel()
        for task in building:
            with contextlib.suppress(BaseException):
                await task

    def forget(self, clip: Clip) -> None:
        key = (clip.camera, clip.from_us, clip.to_us)
        if self._clips.get(key) is clip:
            del self._clips[key]
        if self._held.get(key) is clip:
            del self._held[key]

    def _built(self, key: tuple[str, int, int], task: asyncio.Task[Clip]) -> None:
        del self._building[key]
        if task.cancelled() or task.exception() is not None:
            return  # the exception is retrieved (each waiter gets it too): nothing kept
        self._held[key] = task.result()
        self._keep(key, task.result())

    def _keep(self, key: tuple[str, int, int], clip: Clip) -> None:
        self._clips[key] = clip
        while len(self._clips) > 1 and (len(self._clips) > LAYOUTS or sum(
                len(c.plan.chunks) for c in self._clips.values()) > LAYOUT_CHUNKS):
            self._clips.popitem(last=False)

    async def _build(self, camera: str, from_us: int, to_us: int) -> Clip:
        rows = await _rows(self.index.conn, camera, from_us, to_us)
        cancel = threading.Event()
        learned: list[tuple[str, int, SegmentShape]] = []
        async with self._layouts:
            clip = await in_worker(functools.partial(self._layout, camera, rows, from_us, to_us, cancel, learned),
                                   cancel)
        if learned:  # rows indexed before shapes were kept: next time they are taken whole
            try:
                await fill_shapes(self.index.conn, learned)
            except Exception as exc:  # noqa: BLE001 - an optimisation: the clip is right without it
                log.warning("could not keep the shapes of %d segments of %s in the index: %s", len(learned),
                            camera, exc)
        return clip

    def _layout(self, camera: str, rows: list[tuple[str, int, int, SegmentShape | None]], from_us: int,
                to_us: int, cancel: threading.Event, learned: list[tuple[str, int, SegmentShape]]) -> Clip:
        """Blocking: the plan, loading the tables it asks for (cached)."""
        segments = self.segments
        wanted = [(name, start, size, shape) for path, start, size, shape in rows
                  if (name := name_of(path)) is not None]

        def load(i: int) -> SegmentTable | None:
            if cancel.is_set():
                raise asyncio.CancelledError
            name, start, size, shape = wanted[i]
            try:
                table = self.tables.load(segments, name, size)
            except FileNotFoundError:
                return None  # retention deleted it since the index was read
            if shape is None:
                learned.append((camera, start, shape_of(table)))
            return table

        layout = plan([Row(start, shape) for _, start, _, shape in wanted], from_us, to_us, load)
        return Clip(camera, from_us, to_us, layout, [(name, size, start) for name, start, size, _ in wanted])

    async def body(self, clip: Clip, first: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[first, end)`` of the clip's file: the head written from the segments' tables, the frames read
        from the segments, ``READ_BYTES`` at a time. A table that no longer matches its row ends it with
        ``ChunkMismatch`` (and the clip is made again for the next request)."""
        head = clip.head
        a = first
        step = FIRST_HEAD_BYTES  # the first bytes soon (a day's first MiB of stts is ~900 tables), then larger reads
        try:
            while a < min(end, head.size):
                n = min(step, end - a, head.size - a)
                data = await in_worker(functools.partial(self._head_bytes, clip, a, n))
                yield data
                a += len(data)
                step = min(READ_BYTES, step * 4)
        except ChunkMismatch as exc:
            # Never a wrong file: the answer ends short of its Content-Length (the client sees it cut), the clip
            # is dropped and the row's shape cleared, so the next request reads that table and lays out anew.
            self.forget(clip)
            name, _, start_us = clip.segments[exc.key]
            log.warning("recordings of %s: segment %s: %s", clip.camera, name, exc)
            try:
                await clear_shape(self.index.conn, clip.camera, start_us)
            except Exception as clear_exc:  # noqa: BLE001 - the answer is already ending with the mismatch
                log.warning("could not clear the shape of segment %s: %s", name, clear_exc)
            raise
        if a >= end:
            return
        reader = _Reader(self.segments, [name for name, _, _ in clip.segments])
        try:
            offsets = head.chunk_offsets
            c = max(0, int(np.searchsorted(offsets, a, side="right")) - 1)
            chunks = clip.plan.chunks
            while c < len(chunks) and int(offsets[c]) < end:
                chunk, at = chunks[c], int(offsets[c])
                for src, length in chunk.spans:
                    lo, hi = max(a, at), min(end, at + length)
                    while lo < hi:
                        n = min(READ_BYTES, hi - lo)
                        yield await in_worker(functools.partial(reader.read, chunk.key, src + lo - at, n))
                        lo += n
                    at += length
                    if at >= end:
                        break
                a = max(a, at)
                c += 1
        finally:
            await in_worker(reader.close)

    def _head_bytes(self, clip: Clip, a: int, n: int) -> bytes:
        """Blocking: ``n`` bytes of the head from ``a``; from remote storage the tables they need are fetched
        ``REMOTE_READS`` at once first."""
        segments = self.segments

        def table_of(key: int) -> SegmentTable:
            name, size, _ = clip.segments[key]
            return self.tables.load(segments, name, size)

        keys = clip.head.keys_for(a, n)
        if segments.disk_path is None and len(keys) > 1:
            with ThreadPoolExecutor(REMOTE_READS, thread_name_prefix="recordings-tables") as pool:
                list(pool.map(table_of, keys))
        return clip.head.read(a, n, table_of)


class _Reader:
    """Blocking reads of the clip's segments, one open at a time (worker threads, one at a time)."""

    def __init__(self, segments: SegmentStore, names: Sequence[str]) -> None:
        self.segments, self.names = segments, names
        self.key: int | None = None
        self.held: Any = None
        self.file: BinaryIO | None = None

    def read(self, key: int, offset: int, n: int) -> bytes:
        if key != self.key:
            self.close()
            self.held = open_segment(self.segments, self.names[key])
            self.file = self.held.__enter__()
            self.key = key
        assert self.file is not None
        self.file.seek(offset)
        data = self.file.read(n)
        if len(data) != n:
            raise OSError(f"segment {self.names[key]} is shorter than its index says (changed or deleted?)")
        return data

    def close(self) -> None:
        if self.held is not None:
            held, self.held, self.file, self.key = self.held, None, None, None
            held.__exit__(None, None, None)


async def clear_shape(conn: Any, camera: str, start_us: int) -> None:
    """Forget a segment's shape (NULL: the next layout reads its table and keeps the shape it finds)."""
    async with transaction(conn) as c:
        await c.execute(f"UPDATE segments SET {', '.join(f'{col} = NULL' for col in SHAPE_COLUMNS)} "
                        "WHERE camera = ? AND start_us = ?", (camera, start_us))


async def _rows(conn: Any, camera: str, from_us: int, to_us: int
                ) -> list[tuple[str, int, int, SegmentShape | None]]:
    """(path, start_us, size_bytes, shape) of the camera's segments overlapping the range, in start order."""
    async with conn.execute(
        f"SELECT path, start_us, size_bytes, {', '.join(SHAPE_COLUMNS)} FROM segments WHERE camera = ? AND "
        "start_us >= ? AND start_us < ? AND end_us > ? ORDER BY start_us",
        (camera, from_us - MAX_SEGMENT_US, to_us, from_us),
    ) as cur:
        return [(path, int(s), int(size), shape_from_row(shape)) for path, s, size, *shape in await cur.fetchall()]
