"""Recorded footage over plain HTTP (viewer token): ``/recordings/CAMERA.mp4``, its ``.json`` sidecar, ``/thumbs``.

- ``GET /recordings/CAMERA.mp4?from=TIME&to=TIME``: one seekable MP4 (``moov`` first) of the range, remuxed from
  the segments (``store/playback/mp4_layout.py``), ``Content-Length`` known before the first byte, ``Range``
  answered (206, 416), the frames streamed from the segment files a chunk at a time (``Streamed``).
- ``GET /recordings/CAMERA.json?from=TIME&to=TIME``: what that MP4 holds: its first frame's capture time, its
  media duration and size, the pieces (media offset → capture time) and the gaps left out (docs/protocol.md).
- ``GET /thumbs/CAMERA.jpg?at=TIME&width=W``: the frame nearest a moment, as a JPEG (the API's thumbnail cache).

TIME: ISO 8601 (no zone = the store's local time) or the CLI's forms (shared/timespec.py); times in answers are
UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. A layout is computed once per (camera, from, to) and kept (``LAYOUTS``,
``LAYOUT_HEAD_BYTES``: the least recently used dropped; one an answer being sent still holds is found again), so
the MP4 and the JSON a client reads, and every Range request a player makes, describe the same bytes even while
footage is still arriving. Nothing here runs blocking
work on the event loop: sample tables, layouts and reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, BinaryIO

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from shared.httpjson import error_response, json_response
from shared.ids import InvalidId, check_id
from shared.protocol.times import time_in_range
from shared.request_target import query_values, request_path
from shared.server.streamed import Later, Streamed
from shared.timespec import TimeSpecError, parse_time
from store.index import query
from store.index.location import IndexUnavailable
from store.index.timeline import MAX_SEGMENT_US
from store.media.budget import THUMBNAIL_WORK_BYTES, BudgetRefused
from store.media.thumbs import MAX_WIDTH, MIN_WIDTH, check_width
from store.playback.mp4_layout import Layout, NothingRecorded, Source, plan
from store.playback.ranges import Unsatisfiable, byte_range, content_range
from store.playback.segment_tables import SegmentTable, TableCache, TableError, open_segment
from store.playback.slots import Held, Slot, Slots, client_of
from store.segments import SegmentStore, SegmentStoreError, name_of
from store.serve.media_requests import in_worker

MAX_RANGE_US = 24 * 3600 * 1_000_000
READ_BYTES = 1024 * 1024  # one read of a segment, and the most of the body held at once beyond the socket's buffer
LAYOUTS = 16  # layouts kept, the least recently used dropped first ...
LAYOUT_HEAD_BYTES = 48 * 1024 * 1024  # ... and while their heads hold more than this (a day's is ~5 bytes a frame)
LAYOUTS_AT_ONCE = 2  # layouts being made at once (worker threads)
REMOTE_READS = 8  # sample tables read at once from remote storage (S3: each a ranged GET or two)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_HELP = "use ISO 8601 (2026-11-26T08:00:00Z) or the CLI's forms ('10m ago', 'today 08:00')"


class Refusal(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clip:
    """A computed layout and the segment names its runs read from."""

    def __init__(self, camera: str, from_us: int, to_us: int, layout: Layout, names: Sequence[str]) -> None:
        self.camera, self.from_us, self.to_us = camera, from_us, to_us
        self.layout = layout
        self.names = tuple(names)
        self.run_starts = layout.run_starts

    def sidecar(self) -> dict[str, Any]:
        lo = self.layout
        return {"camera": self.camera, "from": iso(self.from_us), "to": iso(self.to_us), "start": iso(lo.start_us),
                "duration_s": round(lo.duration / lo.timescale, 6), "bytes": lo.total, "frames": lo.frames,
                "pieces": [{"media_s": round(p.media_s, 6), "start": iso(p.start_us), "end": iso(p.end_us),
                            "frames": p.frames} for p in lo.pieces],
                "gaps": [{"start": iso(a), "end": iso(b)} for a, b in lo.gaps],
                "truncated": lo.truncated}


class Playback:
    """The routes' state: the sample-table cache and recent layouts. ``media`` is the API's MediaRequests (root,
    segment storage, thumbnail cache), read at each request (the store sets its storage after start)."""

    def __init__(self, index: Any, media: Any, tables: TableCache | None = None) -> None:
        self.index = index
        self.media = media
        self.tables = tables or TableCache()
        self._clips: OrderedDict[tuple[str, int, int], Clip] = OrderedDict()
        # Every clip still held, by the cache or by an answer being sent (a player's open connection): a Range
        # request for it gets the same bytes even once the cache has dropped it.
        self._held: weakref.WeakValueDictionary[tuple[str, int, int], Clip] = weakref.WeakValueDictionary()
        self._building: dict[tuple[str, int, int], asyncio.Task[Clip]] = {}
        self._layouts = asyncio.Semaphore(LAYOUTS_AT_ONCE)
        self.slots = Slots()  # /recordings answers open per client (store/playback/slots.py)

    @property
    def segments(self) -> SegmentStore:
        return self.media.segments  # type: ignore[no-any-return]

    # --- routes -------------------------------------------------------------------------------------------

    def recordings(self, connection: ServerConnection, request: Request) -> Response | Later:
        """Bad input answered at once; the rest ``Later``: a day's layout can outlast websockets' handshake
        timeout (10 s) on a slow store, so it is made after the handshake has let go of the connection."""
        try:
            camera, kind = _name(request.path, "/recordings/", (".mp4", ".json"))
            from_us, to_us = _range(request.path)
        except Refusal as exc:
            return error_response(connection, exc.status, exc.reason)
        client = client_of(request.path, request.headers.get("Authorization"), connection.remote_address[0])
        if (slot := self.slots.take(client)) is None:
            return error_response(connection, HTTPStatus.TOO_MANY_REQUESTS, self.slots.refusal(client))
        return Later(_held(slot, self._recording(connection, request, camera, kind, from_us, to_us)))

    async def _recording(self, connection: ServerConnection, request: Request, camera: str, kind: str, from_us: int,
                         to_us: int) -> Response | Streamed:
        try:
            clip = await self.clip(camera, from_us, to_us)
        except Refusal as exc:
            return error_response(connection, exc.status, exc.reason)
        except IndexUnavailable as exc:
            return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, f"the index cannot be read now: {exc}")
        if kind == ".json":
            return json_response(connection, HTTPStatus.OK, clip.sidecar())
        return self._mp4(connection, clip, request.headers.get("Range"))

    async def thumbs(self, connection: ServerConnection, request: Request) -> Response:
        try:
            camera, _ = _name(request.path, "/thumbs/", (".jpg",))
            at_us = _time(request.path, "at")
            width = _width(request.path)
            await self._known(camera)
            found = await query.segment_near(self.index.conn, camera, at_us)
            if found is None:
                raise Refusal(HTTPStatus.NOT_FOUND, f"camera {camera} has no recorded footage")
            path, start, _ = found
            name = name_of(path)
            fetch = functools.partial(self.segments.open_media, name) if name is not None else None
            # The API's budget for decodes in progress, per client address (an HTTP route sees no token id).
            with self.media.budget.hold(f"http:{connection.remote_address[0]}", THUMBNAIL_WORK_BYTES, "a thumbnail"):
                thumb = await in_worker(functools.partial(self.media.thumbs.get_or_make, self.media.root / path,
                                                          start, at_us, width, fetch))
        except BudgetRefused as exc:
            return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, exc.message)
        except IndexUnavailable as exc:
            return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, f"the index cannot be read now: {exc}")
        except Refusal as exc:
            return error_response(connection, exc.status, exc.reason)
        except (SegmentStoreError, FileNotFoundError) as exc:
            return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, f"the footage cannot be read now: {exc}")
        except ValueError as exc:  # SegmentFileError: a segment that does not decode
            return error_response(connection, HTTPStatus.INTERNAL_SERVER_ERROR, f"no thumbnail: {exc}")
        response = connection.respond(HTTPStatus.OK, "")
        return _binary(response, thumb.jpeg, "image/jpeg",
                       {"Cache-Control": "private, max-age=60", "X-Frame-Time": iso(thumb.frame_us)})

    # --- the clip ------------------------------------------------------------------------------------------

    async def clip(self, camera: str, from_us: int, to_us: int) -> Clip:
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

    def _built(self, key: tuple[str, int, int], task: asyncio.Task[Clip]) -> None:
        del self._building[key]
        if task.cancelled() or task.exception() is not None:
            return  # the exception is retrieved (each waiter gets it too): nothing kept
        self._held[key] = task.result()
        self._keep(key, task.result())

    def _keep(self, key: tuple[str, int, int], clip: Clip) -> None:
        self._clips[key] = clip
        while len(self._clips) > 1 and (len(self._clips) > LAYOUTS or sum(
                len(c.layout.head) for c in self._clips.values()) > LAYOUT_HEAD_BYTES):
            self._clips.popitem(last=False)

    async def _build(self, camera: str, from_us: int, to_us: int) -> Clip:
        await self._known(camera)
        rows = await _rows(self.index.conn, camera, from_us, to_us)
        if not rows:
            raise Refusal(HTTPStatus.NOT_FOUND, f"camera {camera} has nothing recorded from {iso(from_us)} to "
                          f"{iso(to_us)}")
        cancel = threading.Event()
        try:
            async with self._layouts:  # a day's layout holds ~100 bytes a sample while it is made: bounded
                work = functools.partial(self._layout, camera, rows, from_us, to_us, cancel)
                return await in_worker(work, cancel)
        except NothingRecorded as exc:
            raise Refusal(HTTPStatus.NOT_FOUND, f"camera {camera} has nothing recorded from {iso(from_us)} to "
                          f"{iso(to_us)}") from exc
        except (SegmentStoreError, TableError, OSError) as exc:
            raise Refusal(HTTPStatus.SERVICE_UNAVAILABLE, f"the footage cannot be read now: {exc}") from exc

    def _layout(self, camera: str, rows: list[tuple[str, int, int]], from_us: int, to_us: int,
                cancel: threading.Event) -> Clip:
        """Blocking: the tables of every segment (cached), then the layout. Remote storage (S3) costs a round trip
        or two a table not cached: those are fetched ``REMOTE_READS`` at once."""
        segments = self.segments
        wanted = [(name, start, size) for path, start, size in rows if (name := name_of(path)) is not None]

        def load(item: tuple[str, int, int]) -> SegmentTable | None:
            if cancel.is_set():
                raise asyncio.CancelledError
            try:
                return self.tables.load(segments, item[0], item[2])
            except FileNotFoundError:
                return None  # retention deleted it since the index was read

        if segments.disk_path is None and len(wanted) > 1:
            with ThreadPoolExecutor(REMOTE_READS, thread_name_prefix="recordings-tables") as pool:
                tables = list(pool.map(load, wanted))
        else:
            tables = [load(item) for item in wanted]
        sources: list[Source] = []
        names: list[str] = []
        for (name, start, _), table in zip(wanted, tables, strict=True):
            if table is not None:
                sources.append(Source(len(names), table, start))
                names.append(name)
        return Clip(camera, from_us, to_us, plan(sources, from_us, to_us), names)

    async def _known(self, camera: str) -> None:
        if camera not in await query.known_cameras(self.index.conn):
            raise Refusal(HTTPStatus.NOT_FOUND, f"no camera {camera!r} has recorded footage in this store")

    def _mp4(self, connection: ServerConnection, clip: Clip, range_header: str | None) -> Response | Streamed:
        total = clip.layout.total
        headers = [("Content-Type", "video/mp4"), ("Accept-Ranges", "bytes"), ("Cache-Control", "private, no-cache")]
        try:
            span = byte_range(range_header, total)
        except Unsatisfiable as exc:
            refusal = error_response(connection, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                                     f"Range {range_header!r} asks for {exc}: the file has {total} bytes")
            refusal.headers["Content-Range"] = f"bytes */{total}"
            refusal.headers["Accept-Ranges"] = "bytes"
            return refusal
        first, last = span if span is not None else (0, total - 1)
        headers.append(("Content-Length", str(last - first + 1)))
        if span is not None:
            headers.append(("Content-Range", content_range(first, last, total)))
        status = HTTPStatus.PARTIAL_CONTENT if span is not None else HTTPStatus.OK
        return Streamed(status, headers, self.body(clip, first, last + 1))

    async def body(self, clip: Clip, first: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[first, end)`` of the clip's file: its head from memory, the frames from the segments."""
        head = clip.layout.head
        if first < len(head):
            yield head[first:min(end, len(head))]
        reader = _Reader(self.segments, clip.names)
        try:
            runs = clip.layout.runs
            k = max(0, int(np.searchsorted(clip.run_starts, first, side="right")) - 1)
            while k < len(runs) and runs[k].out_offset < end:
                run = runs[k]
                a = max(first, run.out_offset)
                b = min(end, run.out_offset + run.length)
                while a < b:
                    n = min(READ_BYTES, b - a)
                    chunk = await in_worker(functools.partial(reader.read, run.key, run.src_offset + a -
                                                              run.out_offset, n))
                    yield chunk
                    a += n
                k += 1
        finally:
            await in_worker(reader.close)


async def _held(slot: Slot, making: Awaitable[Response | Streamed]) -> Response | Streamed:
    """The answer, holding the client's slot until its body ends (a plain answer gives it back at once)."""
    try:
        answer = await making
    except BaseException:
        slot.give_back()
        raise
    if isinstance(answer, Streamed):
        answer.body = Held(answer.body, slot)
    else:
        slot.give_back()
    return answer


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


async def _rows(conn: Any, camera: str, from_us: int, to_us: int) -> list[tuple[str, int, int]]:
    """(path, start_us, size_bytes) of the camera's segments overlapping the range, in start order."""
    async with conn.execute(
        "SELECT path, start_us, size_bytes FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ? "
        "AND end_us > ? ORDER BY start_us", (camera, from_us - MAX_SEGMENT_US, to_us, from_us),
    ) as cur:
        return [(path, int(s), int(size)) for path, s, size in await cur.fetchall()]


def _name(target: str, prefix: str, kinds: tuple[str, ...]) -> tuple[str, str]:
    """The camera and the suffix of ``/prefix/CAMERA.kind``; 404 naming the forms otherwise."""
    name = request_path(target)[len(prefix):]
    stem, dot, ext = name.rpartition(".")
    if not dot or "." + ext not in kinds:
        forms = " or ".join(f"{prefix}CAMERA{k}" for k in kinds)
        raise Refusal(HTTPStatus.NOT_FOUND, f"no such resource {name!r}: the path is {forms}")
    try:
        return check_id(stem, "camera id"), "." + ext
    except InvalidId as exc:
        raise Refusal(HTTPStatus.NOT_FOUND, str(exc)) from None


def _time(target: str, field: str) -> int:
    values = query_values(target, field)
    if len(values) != 1:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"give {field}=TIME once ({_TIME_HELP})")
    try:
        us = parse_time(values[0])
    except TimeSpecError as exc:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{field}: {exc}") from None
    if not time_in_range(us):
        raise Refusal(HTTPStatus.BAD_REQUEST, f"{field}: {values[0]!r} is outside 1970..2255")
    return us


def _range(target: str) -> tuple[int, int]:
    from_us, to_us = _time(target, "from"), _time(target, "to")
    if from_us >= to_us:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"from ({iso(from_us)}) must be before to ({iso(to_us)})")
    if to_us - from_us > MAX_RANGE_US:
        raise Refusal(HTTPStatus.BAD_REQUEST, "the range is longer than 24 hours; ask for a day at most at a time")
    return from_us, to_us


def _width(target: str) -> int:
    values = query_values(target, "width")
    if not values:
        return 320
    try:
        width = int(values[0]) if len(values) == 1 and values[0].isdecimal() else -1
        check_width(width)
    except ValueError:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"width must be one whole number from {MIN_WIDTH} to {MAX_WIDTH}, "
                      f"got {','.join(values)!r}") from None
    return width


def _binary(response: Response, body: bytes, content_type: str, extra: dict[str, str]) -> Response:
    response = replace(response, body=body)
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = content_type
    response.headers["Content-Length"] = str(len(body))
    for name, value in extra.items():
        response.headers[name] = value
    return response

