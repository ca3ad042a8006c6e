"""``/live/{camera}?format=fmp4`` (node and relay): the live stream as fragmented MP4 for a browser.

Per camera and stream (main, sub), one ``Fmp4Stream`` turns each access unit
into one fragment at most once: fragments depend only on the unit and the
camera's base time, so every fMP4 viewer of a stream is sent the same ``bytes``
object, as with the plain framing. Messages: the JSON ``init`` (with ``format``
and the MSE ``mime`` type, codec string from the SPS), one binary init segment,
then one binary fragment per access unit; ``status`` text messages as on the
plain stream. A viewer switched between main and sub (``?stream=auto``) gets a
new JSON init and init segment; main and sub share the camera's ``Fmp4Clock``,
so decode times run on across the switch.

``LiveWriter`` is the one per-viewer sender of both formats, for node and relay.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from shared.adaptive import AdaptivePolicy
from shared.fanout import AccessUnit, Subscription
from shared.httpjson import error_response
from shared.protocol import fmp4
from shared.protocol.live import LiveInit
from shared.request_target import query_values, request_path

CACHE_UNITS = 128  # > any viewer's backlog (fps * 2 + 1 at up to 60 fps)
# A live viewer's kernel send buffer (Linux doubles it for bookkeeping). Left to autotuning it grows to
# megabytes: seconds of video queued in the kernel, as latency, and a stalled viewer the fan-out and the
# adaptive switch never see. 64 KiB still carries ~10 Mbit/s at 100 ms round trip.
LIVE_SNDBUF = 64 * 1024
STREAMS = ("main", "sub", "auto")


@dataclass
class Fmp4Clock:
    """A camera's fMP4 time zero, shared by its main and sub streams (capture times are one clock)."""

    base_us: int | None = None


class Fmp4Stream:
    def __init__(self, init: LiveInit, clock: Fmp4Clock | None = None) -> None:
        self.init = init
        self.clock = clock or Fmp4Clock()
        self.duration = max(1, round(fmp4.TIMESCALE / init.fps)) if init.fps > 0 else 3000
        self._fragments: OrderedDict[int, bytes] = OrderedDict()
        self._header: tuple[tuple[bytes, bytes], str, bytes] | None = None
        self.fragments_built = 0

    def header(self, keyframe: AccessUnit) -> tuple[str, bytes]:
        """The JSON init and the init segment, from a keyframe's parameter sets."""
        params = fmp4.parameter_sets(fmp4.nal_units(keyframe.data))
        if params is None:
            raise ValueError("keyframe without SPS and PPS; cannot describe the stream")
        if self._header is None or self._header[0] != params:
            sps, pps = params
            i = self.init
            mime = f'video/mp4; codecs="{fmp4.codec_string(sps)}"'
            text = json.dumps({"type": "init", "camera": i.camera, "codec": i.codec, "width": i.width,
                               "height": i.height, "fps": i.fps, "stream": i.stream, "format": "fmp4",
                               "mime": mime})
            self._header = (params, text, fmp4.init_segment(i.width, i.height, sps, pps))
        return self._header[1], self._header[2]

    def fragment(self, unit: AccessUnit) -> bytes:
        cached = self._fragments.get(unit.capture_us)
        if cached is not None:
            return cached
        if self.clock.base_us is None:
            self.clock.base_us = unit.capture_us
        ticks = max(0, unit.capture_us - self.clock.base_us) * fmp4.TIMESCALE // 1_000_000
        data = fmp4.fragment(ticks // self.duration + 1, ticks, self.duration, unit.keyframe,
                             fmp4.media_nals(fmp4.nal_units(unit.data)))
        self.fragments_built += 1
        self._fragments[unit.capture_us] = data
        if len(self._fragments) > CACHE_UNITS:
            self._fragments.popitem(last=False)
        return data


class LiveWriter:
    """One viewer's sender, plain or fMP4: ``begin`` a stream (at the start, after a switch or a resumption),
    then ``send`` its units, the first of which is a keyframe (subscriptions start on one)."""

    def __init__(self, connection: ServerConnection, fmp4: bool) -> None:
        self.connection, self.fmp4 = connection, fmp4
        self._stream: Fmp4Stream | None = None
        self._header_due = False
        sock = connection.transport.get_extra_info("socket") if connection.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # a socket that refuses the option keeps its autotuning
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LIVE_SNDBUF)

    async def begin(self, init: LiveInit, stream: Fmp4Stream | None) -> None:
        if self.fmp4:
            assert stream is not None, "an fMP4 viewer needs the stream's Fmp4Stream"
            self._stream, self._header_due = stream, True  # the header needs the first keyframe's SPS/PPS
        else:
            await self.connection.send(init.serialize())

    async def pump(self, sub: Subscription, policy: AdaptivePolicy | None,
                   accept: Callable[[str], bool] = lambda stream: True) -> str | None:
        """Send ``sub``'s units until it ends (None), or, for an ``auto`` viewer, until the policy wants the
        other stream and ``accept`` agrees: then the name of that stream (node and relay share this loop)."""
        overflows = sub.overflows
        while (unit := await sub.get()) is not None:
            started = time.monotonic()
            await self.send(unit)
            if policy is None:
                continue
            now = time.monotonic()
            want = policy.observe(sub.backlog, now, now - started, sub.overflows - overflows)
            overflows = sub.overflows
            if want is not None and accept(want):
                return want
        return None

    async def send(self, unit: AccessUnit) -> None:
        if self._stream is None:
            await self.connection.send(unit.message)
            return
        if self._header_due:
            text, segment = self._stream.header(unit)
            await self.connection.send(text)
            await self.connection.send(segment)
            self._header_due = False
        await self.connection.send(self._stream.fragment(unit))


LIVE_PREFIX = "/live/"
FORMATS = ("h264", "fmp4")


def stream_choice(path: str) -> str:
    """``?stream=main|sub|auto`` (default main); a camera without a sub stream always sends main."""
    values = query_values(path, "stream") or ["main"]
    if values[0] not in STREAMS:
        raise ValueError(f"stream must be main, sub or auto, got {values[0]!r}")
    return values[0]


def live_target(target: str, cameras: Iterable[str] | None = None) -> tuple[str, bool]:
    """``/live/CAM?format=fmp4`` → (camera, fmp4?); the path read by the servers' one rule set (request_path).

    Raises ``LookupError`` for a camera not in ``cameras``, ``ValueError`` for an unknown format or a bad path.
    """
    camera = request_path(target)[len(LIVE_PREFIX):]
    fmt = (query_values(target, "format") or ["h264"])[0]
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    if cameras is not None:
        known = sorted(cameras)
        if camera not in known:
            raise LookupError(f"no camera {camera!r} (cameras: {', '.join(known) or 'none'})")
    return camera, fmt == "fmp4"


def live_refusal(connection: ServerConnection, request_path: str, cameras: Iterable[str]) -> Response | None:
    """The handshake answer to a ``/live/`` request that cannot be served (404 camera, 400 query), else None."""
    try:
        live_target(request_path, cameras)
        stream_choice(request_path)
    except LookupError as exc:
        return error_response(connection, HTTPStatus.NOT_FOUND, str(exc))
    except ValueError as exc:
        return error_response(connection, HTTPStatus.BAD_REQUEST, str(exc))
    return None
