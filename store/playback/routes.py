"""Recorded footage over plain HTTP (viewer token): ``/recordings/CAMERA.mp4``, its ``.json`` sidecar, ``/thumbs``.

- ``GET /recordings/CAMERA.mp4?from=TIME&to=TIME``: one seekable MP4 (``moov`` first) of the range, remuxed from
  the segments and laid out from their index rows (store/playback/stream_layout.py, clips.py), ``Content-Length``
  known before the first byte, ``Range`` answered (206, 416), the ``moov`` written and the frames read from the
  segment files a part at a time (``Streamed``).
- ``GET /recordings/CAMERA.json?from=TIME&to=TIME``: what that MP4 holds: its first frame's capture time, its
  media duration and size, the pieces (media offset → capture time) and the gaps left out (docs/protocol.md).
- ``GET /thumbs/CAMERA.jpg?at=TIME&width=W``: the frame nearest a moment, as a JPEG (the API's thumbnail cache).

TIME: ISO 8601 (no zone = the store's local time) or the CLI's forms (shared/timespec.py); times in answers are
UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. Nothing here runs blocking work on the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from dataclasses import replace
from http import HTTPStatus
from typing import Any

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
from store.media.budget import THUMBNAIL_WORK_BYTES, BudgetRefused
from store.media.thumbs import MAX_WIDTH, MIN_WIDTH, check_width
from store.playback.clips import Clip, Clips, iso
from store.playback.ranges import Unsatisfiable, byte_range, content_range
from store.playback.segment_tables import TableCache, TableError
from store.playback.slots import Held, Slot, Slots, client_of
from store.playback.stream_layout import NothingRecorded
from store.segments import SegmentStore, SegmentStoreError, name_of
from store.serve.media_requests import in_worker

MAX_RANGE_US = 24 * 3600 * 1_000_000
_TIME_HELP = "use ISO 8601 (2026-11-26T08:00:00Z) or the CLI's forms ('10m ago', 'today 08:00')"


class Refusal(Exception):
    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Playback:
    """The routes' state: the clips laid out (store/playback/clips.py) and the answers open per client. ``media``
    is the API's MediaRequests (root, segment storage, thumbnail cache), read at each request (the store sets its
    storage after start)."""

    def __init__(self, index: Any, media: Any, tables: TableCache | None = None) -> None:
        self.index = index
        self.media = media
        self.clips = Clips(index, lambda: self.media.segments, tables)
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
            try:
                doc = await clip.sidecar()
            except NothingRecorded:
                return error_response(connection, HTTPStatus.NOT_FOUND, f"camera {camera} has nothing recorded from "
                                      f"{iso(from_us)} to {iso(to_us)}")
            except (SegmentStoreError, TableError, OSError) as exc:
                return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"the footage cannot be read now: {exc}")
            answer = json_response(connection, HTTPStatus.OK, doc)
            answer.headers["ETag"] = clip.etag
            return answer
        return self._mp4(connection, clip, request.headers.get("Range"), request.headers.get("If-Range"))

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
        await self._known(camera)
        try:
            return await self.clips.get(camera, from_us, to_us)
        except NothingRecorded as exc:
            raise Refusal(HTTPStatus.NOT_FOUND, f"camera {camera} has nothing recorded from {iso(from_us)} to "
                          f"{iso(to_us)}") from exc
        except (SegmentStoreError, TableError, OSError) as exc:
            raise Refusal(HTTPStatus.SERVICE_UNAVAILABLE, f"the footage cannot be read now: {exc}") from exc

    async def _known(self, camera: str) -> None:
        if camera not in await query.known_cameras(self.index.conn):
            raise Refusal(HTTPStatus.NOT_FOUND, f"no camera {camera!r} has recorded footage in this store")

    async def close(self) -> None:
        await self.clips.close()

    def _mp4(self, connection: ServerConnection, clip: Clip, range_header: str | None,
             if_range: str | None) -> Response | Streamed:
        total = clip.total
        headers = [("Content-Type", "video/mp4"), ("Accept-Ranges", "bytes"), ("Cache-Control", "private, no-cache"),
                   ("ETag", clip.etag)]
        if if_range is not None and if_range.strip() != clip.etag:
            range_header = None  # the client's copy is another file (or dated): the whole of this one
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
        return Streamed(status, headers, self.clips.body(clip, first, last + 1))


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

