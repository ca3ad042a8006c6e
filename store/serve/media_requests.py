"""The ``export`` and ``thumbnail`` API methods: the two that make files, each bounded and cleaned up.

Before work starts a request reserves its share of the token's temporary budget
(``store/media/budget.py``: an export its estimated size, a thumbnail the memory
of a decode). When the client goes (its connection closes, so ``Api.serve``
cancels the request's task), the export's worker thread is told to stop and the
task waits until it has, and only then deletes the clip: nothing is renamed into
place after the delete. What a crash leaves is swept by ``CacheJanitor``
(``store/maintenance/janitor.py``), which skips the clips named in ``active``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import secrets
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from shared.protocol.query import ExportParams, QueryServer, ThumbnailParams
from shared.protocol.results import ExportResult, Thumbnail
from store.index import query
from store.index.db import Index
from store.media.budget import THUMBNAIL_WORK_BYTES, BudgetRefused, MediaLimits, TempBudget, default_thumb_cache_bytes
from store.media.export import ExportError, SegmentSource, export_clip
from store.media.source import MediaInput
from store.media.thumbs import ThumbnailCache
from store.segments import SegmentStore, SegmentStoreError, name_of
from store.segments.files import FileSegments

CHUNK_BYTES = 256 * 1024
EXPORTS_DIR = ("cache", "exports")
THUMBS_DIR = ("cache", "thumbs")
ANONYMOUS = "anonymous"  # every request of a store without authentication shares one budget
# The token (id) the current request came with, set by Api.handle in the request's own task.
REQUEST_TOKEN: contextvars.ContextVar[str] = contextvars.ContextVar("request_token", default=ANONYMOUS)

T = TypeVar("T")
Send = Callable[[], Awaitable[None]]


class MediaRefused(Exception):
    """A refusal for the API's error reply (``Api`` turns it into its ``ApiError``)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


async def in_worker(fn: Callable[[], T], cancel: threading.Event | None = None) -> T:
    """``fn()`` in a worker thread. If the awaiting task is cancelled, set ``cancel`` and wait for the worker to
    finish before the cancellation goes on, so the caller's cleanup never races a thread still writing."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.set()
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue  # cancelled again while waiting: the worker still has to stop first
            except Exception:  # noqa: BLE001 - its failure is moot: the request is gone
                break
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
        raise


class MediaRequests:
    def __init__(self, root: Path, index: Index, limits: MediaLimits | None = None,
                 segments: SegmentStore | None = None) -> None:
        self.root = root
        self.index = index
        # Where segments are read from (default: files under ROOT/segments); the store sets its own.
        self.segments: SegmentStore = segments if segments is not None else FileSegments(root)
        self.limits = limits or MediaLimits()
        self.budget = TempBudget(self.limits.temp_per_token, self.limits.temp_total)
        percent = self.limits.thumb_cache_percent
        self.thumbs = ThumbnailCache(root.joinpath(*THUMBS_DIR), self.limits.thumb_cache_bytes,
                                     lambda total: default_thumb_cache_bytes(total, percent))
        self.exports_dir = root.joinpath(*EXPORTS_DIR)
        self.active: set[str] = set()  # names of clips being written or sent (the janitor leaves them)

    async def thumbnail(self, p: ThumbnailParams, rid: int, server: QueryServer) -> dict[str, Any]:
        found = await query.segment_near(self.index.conn, p.camera, p.at_us)
        if found is None:
            raise MediaRefused("no-footage", f"camera {p.camera} has no recorded footage", "at_us")
        path, start, _end = found
        with _reserve(self.budget, THUMBNAIL_WORK_BYTES, "a thumbnail", "width"):
            try:
                thumb = await in_worker(functools.partial(self.thumbs.get_or_make, self.root / path, start, p.at_us,
                                                          p.width, self._fetch(path, whole=False)))
            except SegmentStoreError as exc:
                raise MediaRefused("unavailable", f"the segment storage cannot be read now: {exc}", "at_us") from exc
        server.chunk(rid, thumb.jpeg)
        return Thumbnail(thumb.frame_us, thumb.width, thumb.height, len(thumb.jpeg)).to_json()

    async def export(self, p: ExportParams, rid: int, server: QueryServer, flush: Send) -> dict[str, Any]:
        rows = await query.segments_for_range(self.index.conn, p.camera, p.range.from_us, p.range.to_us)
        if not rows:
            raise MediaRefused("no-footage", f"camera {p.camera} has nothing recorded in that range", "from_us")
        # The clip holds at most the frames of these segments: their sizes bound it (plus the MP4's index).
        estimate = await query.bytes_for_range(self.index.conn, p.camera, p.range.from_us, p.range.to_us)
        what = f"an export of {len(rows)} segments of {p.camera}"
        with _reserve(self.budget, estimate + 64 * 1024, what, "to_us"):
            self.exports_dir.mkdir(parents=True, exist_ok=True)
            out = self.exports_dir / f"{p.camera}-{secrets.token_hex(6)}.mp4"
            self.active.add(out.name)
            cancel = threading.Event()
            try:
                try:
                    sources = [(self._source(path, whole=p.range.from_us <= start and end <= p.range.to_us), start)
                               for path, start, end in rows]
                    result = await in_worker(functools.partial(
                        export_clip, sources, p.range.from_us, p.range.to_us, out, None, cancel), cancel)
                except ExportError as exc:
                    raise MediaRefused("no-footage", str(exc), "from_us") from exc
                except SegmentStoreError as exc:  # S3 down, or an object changed under the reader
                    raise MediaRefused("unavailable", f"the segment storage cannot be read now: {exc}",
                                       "from_us") from exc
                total = result.bytes
                server.progress(rid, 0, total)
                await flush()
                with out.open("rb") as f:
                    done = 0
                    while chunk := await in_worker(functools.partial(f.read, CHUNK_BYTES)):
                        done += len(chunk)
                        server.chunk(rid, chunk)
                        server.progress(rid, done, total)
                        await flush()
            finally:  # the worker has stopped (in_worker waited for it): nothing can put the clip back
                out.unlink(missing_ok=True)
                self.active.discard(out.name)
        return ExportResult(p.camera, result.start_us, result.end_us, result.frames, result.segments_used,
                            total).to_json()


    def _fetch(self, path: str, whole: bool) -> Callable[[], AbstractContextManager[MediaInput]] | None:
        """What yields what PyAV reads the segment from. Files: the file itself, either way. S3 (docs/cluster.md,
        "Segments on S3"): ``whole`` (a segment an export copies from end to end) a copy of the whole object, one
        GET, in the segment cache; otherwise (a thumbnail: the head, the index and one GOP; an export's first or
        last segment, cut by the range) a reader that fetches only the byte ranges read."""
        name = name_of(path)
        if name is None:
            return None  # a path the store never writes: read where it says, as always (and failing there)
        return functools.partial(self.segments.open_local if whole else self.segments.open_media, name)

    def _source(self, path: str, whole: bool) -> SegmentSource:
        fetch = self._fetch(path, whole)
        return self.root / path if fetch is None else fetch


class _reserve:
    """``budget.hold`` for one request's token, its refusal turned into a ``MediaRefused`` naming ``field``."""

    def __init__(self, budget: TempBudget, nbytes: int, what: str, field: str) -> None:
        self.hold = budget.hold(REQUEST_TOKEN.get(), nbytes, what)
        self.field = field

    def __enter__(self) -> None:
        try:
            self.hold.__enter__()
        except BudgetRefused as exc:
            raise MediaRefused(exc.code, exc.message, self.field) from exc

    def __exit__(self, *exc: object) -> None:
        self.hold.__exit__(*exc)  # type: ignore[arg-type]
