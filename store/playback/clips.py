"""The ``/recordings`` files a store has laid out: made from index rows (``stream_layout``), kept, and read.

A clip is computed once per (camera, from, to) and kept (``LAYOUTS``, ``LAYOUT_CHUNKS``: the least recently used
dropped; one an answer being sent still holds is found again), so the MP4 and the JSON a client reads, and every
Range request a player makes, describe the same bytes even while footage is still arriving.

A long range is first *sized* (store/playback/sizing.py: its ends' tables and the hour summaries between), and
answered at once with its size and first bytes while its plan is made; otherwise (or when the sizing cannot tell)
the plan comes first. Making the plan costs a query, a loop over the rows and the tables of the segments the range
cuts (and of rows whose shape is not known yet: those shapes are then written back, so each older segment is read
this way once). The ``moov``'s big tables are written while the answer is sent (``stream_head.Head``), from the
table cache.
Nothing here runs blocking work on the event loop: tables, layouts and reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import numpy as np

from store.index.shapes import clear_shape, fill_shapes
from store.playback.rows import Rows, rows_of
from store.playback.segment_shape import SegmentShape, shape_of
from store.playback.segment_tables import SegmentTable, TableCache, open_segment
from store.playback.sizing import plan_etag, size_range
from store.playback.stream_head import ChunkMismatch, Counts, Head, Sizes
from store.playback.stream_layout import Row, plan
from store.segments import SegmentStore, SegmentStoreError, name_of
from store.serve.media_requests import in_worker

log = logging.getLogger(__name__)

READ_BYTES = 1024 * 1024  # one read of a segment or of the head, and the most of the body held at once
FIRST_HEAD_TABLES = 32  # segment tables the first read of the head may need (then 4 times more each read ...)
HEAD_TABLES = 2048  # ... up to this many)
LAYOUTS = 16  # clips kept, the least recently used dropped first ...
LAYOUT_CHUNKS = 100_000  # ... and while they hold more chunks than this (~300 bytes each; a day is 8,640)
LAYOUTS_AT_ONCE = 2  # clips being laid out at once (worker threads)
REMOTE_READS = 8  # sample tables read at once from remote storage (S3: each a ranged GET or two)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LayoutMismatch(OSError):
    """The plan's counts differ from those the answer was sized by (a bug: the sizing is switched off)."""


class Clip:
    """A file of a range: its counts (so its size, ETag and first bytes) at once, its plan and head when made
    (``made``; at once too when there was no sizing), and the segments (name, size, start_us) its chunks read."""

    def __init__(self, camera: str, from_us: int, to_us: int, counts: Counts, etag: str) -> None:
        self.camera, self.from_us, self.to_us = camera, from_us, to_us
        self.counts, self.etag = counts, etag
        self.sizes = Sizes.of(counts)
        self.made: asyncio.Future[tuple[Head, tuple[tuple[str, int, int], ...]]] = (
            asyncio.get_running_loop().create_future())
        self.chunks = 0  # once made

    @property
    def total(self) -> int:
        return self.sizes.total

    def settle(self, head: Head, segments: Sequence[tuple[str, int, int]]) -> None:
        self.chunks = len(head.plan.chunks)
        self.made.set_result((head, tuple(segments)))

    async def head(self) -> tuple[Head, tuple[tuple[str, int, int], ...]]:
        return await asyncio.shield(self.made)

    async def sidecar(self) -> dict[str, Any]:
        head, _ = await self.head()
        p = head.plan
        ts = p.track.timescale
        return {"camera": self.camera, "from": iso(self.from_us), "to": iso(self.to_us), "start": iso(p.start_us),
                "duration_s": round(p.duration / ts, 6), "bytes": self.total, "frames": p.frames,
                "pieces": [{"media_s": round(q.media_s, 6), "start": iso(q.start_us), "end": iso(q.end_us),
                            "frames": q.frames} for q in p.pieces],
                "gaps": [{"start": iso(a), "end": iso(b)} for a, b in p.gaps],
                "truncated": p.truncated, "etag": self.etag}


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
        self._plans: set[asyncio.Task[None]] = set()
        self._layouts = asyncio.Semaphore(LAYOUTS_AT_ONCE)
        self.sizing = True  # off after a LayoutMismatch: every answer then waits for its plan
        self.sized = 0  # answers sized before their plan (for tests and the bench)
        self._closed = False

    @property
    def segments(self) -> SegmentStore:
        return self._segments()  # type: ignore[no-any-return]

    async def get(self, camera: str, from_us: int, to_us: int) -> Clip:
        """The clip, made if not kept; ``NothingRecorded`` (none of the rows has a frame in the range), storage
        and table errors as they come."""
        if self._closed:
            raise SegmentStoreError("the store is closing", retry=True)
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
        self._closed = True
        tasks = [*self._building.values(), *self._plans]
        for task in tasks:
            task.cancel()
        for task in tasks:
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
        self._evict()

    def _evict(self) -> None:
        while len(self._clips) > 1 and (len(self._clips) > LAYOUTS or sum(
                c.chunks for c in self._clips.values()) > LAYOUT_CHUNKS):
            self._clips.popitem(last=False)

    async def _build(self, camera: str, from_us: int, to_us: int) -> Clip:
        """Sized from the rows at the ends and a summary of those between when it can be (the plan then made in
        the background), else planned first."""
        sized = await self._size(camera, from_us, to_us) if self.sizing else None
        if sized is not None:
            clip = Clip(camera, from_us, to_us, *sized)
            task = asyncio.create_task(self._make(clip), name="recordings-plan")
            self._plans.add(task)
            task.add_done_callback(self._plans.discard)
            # Cancelled before its first step (the store closing), _make never ran: its answers must not wait.
            task.add_done_callback(lambda _: _fail(clip, OSError("the store is closing")))
            self.sized += 1
            return clip
        head, segments = await self._plan(camera, from_us, to_us)
        clip = Clip(camera, from_us, to_us, head.counts, _plan_etag(camera, head, segments))
        clip.settle(head, segments)
        return clip

    async def _make(self, clip: Clip) -> None:
        """The plan of a clip answered from its sizing; a plan that differs fails the clip (its answers end short).
        When sizing the range again agrees with the plan, the index changed in between (a segment arrived or went):
        that answer only. When it does not, the sizing is wrong: switched off, and logged as a bug."""
        try:
            head, segments = await self._plan(clip.camera, clip.from_us, clip.to_us)
            planned = (head.counts, _plan_etag(clip.camera, head, segments))
            if planned != (clip.counts, clip.etag):
                again = await self._size(clip.camera, clip.from_us, clip.to_us)
                if again is not None and again != planned:
                    self.sizing = False
                    log.error("recordings of %s from %s to %s: the plan's counts %s differ from the sizing's %s; "
                              "every answer waits for its plan from now on (a bug: please report it)", clip.camera,
                              iso(clip.from_us), iso(clip.to_us), _numbers(planned[0]), _numbers(again[0]))
                else:
                    log.info("recordings of %s from %s to %s: footage changed while the file was laid out; that "
                             "answer ends short", clip.camera, iso(clip.from_us), iso(clip.to_us))
                raise LayoutMismatch("the footage changed while the file was laid out; ask again")
        except BaseException as exc:
            self.forget(clip)
            _fail(clip, exc if isinstance(exc, Exception) else OSError("the store is closing"))
            if not isinstance(exc, Exception):
                raise
            return
        clip.settle(head, segments)
        self._evict()  # its chunks count now

    async def _plan(self, camera: str, from_us: int, to_us: int) -> tuple[Head, list[tuple[str, int, int]]]:
        rows = await rows_of(self.index.conn, camera, from_us, to_us)
        cancel = threading.Event()
        learned: list[tuple[str, int, SegmentShape]] = []
        async with self._layouts:
            made = await in_worker(functools.partial(self._layout, camera, rows, from_us, to_us, cancel, learned),
                                   cancel)
        if learned:  # rows indexed before shapes were kept: next time they are taken whole
            try:
                await fill_shapes(self.index.conn, learned)
            except Exception as exc:  # noqa: BLE001 - an optimisation: the clip is right without it
                log.warning("could not keep the shapes of %d segments of %s in the index: %s", len(learned),
                            camera, exc)
        return made

    def _layout(self, camera: str, rows: Rows, from_us: int, to_us: int, cancel: threading.Event,
                learned: list[tuple[str, int, SegmentShape]]) -> tuple[Head, list[tuple[str, int, int]]]:
        """Blocking: the plan and head, loading the tables the plan asks for (cached)."""
        wanted = [(name, start, size, shape) for path, start, size, shape in rows
                  if (name := name_of(path)) is not None]
        load = self._loader(camera, wanted, cancel, learned)
        layout = plan([Row(start, shape) for _, start, _, shape in wanted], from_us, to_us, load)
        return Head(layout), [(name, size, start) for name, start, size, _ in wanted]

    def _loader(self, camera: str, wanted: list[tuple[str, int, int, SegmentShape | None]], cancel: threading.Event,
                learned: list[tuple[str, int, SegmentShape]]) -> Callable[[int], SegmentTable | None]:
        segments = self.segments

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
        return load

    async def _size(self, camera: str, from_us: int, to_us: int) -> tuple[Counts, str] | None:
        """The counts and ETag before the plan (store/playback/sizing.py), or None: plan first."""
        cancel = threading.Event()
        learned: list[tuple[str, int, SegmentShape]] = []  # shapes of NULL rows are left to the plan to keep
        return await size_range(self.index.conn, camera, from_us, to_us,
                                lambda wanted: self._loader(camera, wanted, cancel, learned), cancel)

    async def body(self, clip: Clip, first: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[first, end)`` of the clip's file: its first bytes from its counts at once, the rest of the head
        written from the segments' tables once the plan is made, the frames read from the segments. A table that
        no longer matches its row (or a segment gone) ends it short with ``ChunkMismatch``, and the clip is made
        again for the next request."""
        prefix = clip.sizes.prefix
        a = first
        if a < len(prefix):
            yield prefix[a:min(end, len(prefix))]
            a = min(end, len(prefix))
        if a >= end:
            return
        head, segments = await clip.head()
        tables = FIRST_HEAD_TABLES  # the first bytes soon, then larger reads
        try:
            while a < min(end, head.size):
                n = min(READ_BYTES, end - a, head.reach(a, tables))
                data = await in_worker(functools.partial(self._head_bytes, head, segments, a, n))
                yield data
                a += len(data)
                tables = min(HEAD_TABLES, tables * 4)
        except ChunkMismatch as exc:
            # Never a wrong file: the answer ends short of its Content-Length (the client sees it cut), the clip
            # is dropped and the row's shape cleared, so the next request reads that table and lays out anew.
            self.forget(clip)
            name, _, start_us = segments[exc.key]
            log.warning("recordings of %s: segment %s: %s", clip.camera, name, exc)
            try:
                await clear_shape(self.index.conn, clip.camera, start_us)
            except Exception as clear_exc:  # noqa: BLE001 - the answer is already ending with the mismatch
                log.warning("could not clear the shape of segment %s: %s", name, clear_exc)
            raise
        if a >= end:
            return
        reader = _Reader(self.segments, [name for name, _, _ in segments])
        try:
            offsets = head.chunk_offsets
            c = max(0, int(np.searchsorted(offsets, a, side="right")) - 1)
            chunks = head.plan.chunks
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
        except OSError:
            self.forget(clip)  # a segment gone or changed: the next request lays the range out again
            raise
        finally:
            await in_worker(reader.close)

    def _head_bytes(self, head: Head, segments: Sequence[tuple[str, int, int]], a: int, n: int) -> bytes:
        """Blocking: ``n`` bytes of the head from ``a``; from remote storage the tables they need are fetched
        ``REMOTE_READS`` at once first. A segment gone since the layout is a ``ChunkMismatch``."""
        store = self.segments

        def table_of(key: int) -> SegmentTable:
            name, size, _ = segments[key]
            try:
                return self.tables.load(store, name, size)
            except FileNotFoundError as exc:
                raise ChunkMismatch(key, f"its file is gone: {exc}") from exc

        keys = head.keys_for(a, n)
        if store.disk_path is None and len(keys) > 1:
            with ThreadPoolExecutor(REMOTE_READS, thread_name_prefix="recordings-tables") as pool:
                list(pool.map(table_of, keys))
        return head.read(a, n, table_of)


def _fail(clip: Clip, exc: Exception) -> None:
    """Fail the clip's plan (once), the exception retrieved here: the answers waiting on it get it too."""
    if not clip.made.done():
        clip.made.set_exception(exc)
        clip.made.exception()


def _numbers(counts: Counts) -> str:
    return (f"duration {counts.duration} frames {counts.frames} keyframes {counts.keyframes} stts "
            f"{counts.time_runs} chunks {counts.chunks} bytes {counts.data_bytes}")


def _plan_etag(camera: str, head: Head, segments: Sequence[tuple[str, int, int]]) -> str:
    return plan_etag(camera, head.plan, [s for _, _, s in segments], [n for _, n, _ in segments])


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
