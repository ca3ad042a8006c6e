"""A camera's pictures for the detector: the relay's upstream, decoded only while someone wants them.

The store holds one upstream per camera it detects on (the sub stream where the
camera has one: a fraction of the decoding), for as long as the camera is known,
so an event that opens finds the stream already flowing. It keeps the access
units since the last keyframe (one GOP): when an event opens, decoding starts
from that keyframe at once and the event's first frames, which arrived before
the store heard of the event, are analysed too. While nobody wants pictures,
nothing is decoded; the buffer costs a GOP of compressed bytes.

Decoding runs in a worker thread, one batch of access units at a time, so the
event loop never waits on FFmpeg.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from shared.fanout import AccessUnit, Subscription
from store.live.relay import Relay, Upstream

log = logging.getLogger(__name__)
MAX_WIDTH = 640  # pictures are scaled to at most this wide before detection (boxes are fractions anyway)
MAX_GOP_UNITS = 600  # a GOP longer than this (40 s at 15 fps) is not buffered whole: decoding waits for a keyframe
DECODERS = {"h265": "hevc"}  # the node's codec names that FFmpeg spells otherwise
SUBSCRIPTION_CAPACITY = 120  # access units queued for this feed before the fan-out drops its backlog


@dataclass(frozen=True)
class Picture:
    """One decoded frame as the detector takes it."""

    camera: str
    capture_us: int
    rgb: np.ndarray  # H x W x 3 uint8


Wanted = Callable[[int], bool]  # capture_us -> is a picture of this instant wanted now?


class CameraFeed:
    """One camera's upstream, its GOP buffer and its decoder; hands wanted pictures to ``deliver``."""

    def __init__(self, relay: Relay, camera: str, stream: str, wanted: Wanted,
                 deliver: Callable[[Picture], None], max_width: int = MAX_WIDTH) -> None:
        self.relay, self.camera, self.stream = relay, camera, stream
        self.wanted, self.deliver, self.max_width = wanted, deliver, max_width
        self.decoding = False  # set_decoding(True) while an event of this camera is open
        self.gop: list[AccessUnit] = []
        self._decoded_upto: int = -1  # index into ``gop`` of the last unit fed to the decoder
        self._decoder: VideoCodecContext | None = None  # the loop's; a decode in flight has its own reference
        self._generation = 0  # bumped whenever the decoder is forgotten
        self.codec = "h264"  # FFmpeg's decoder for the stream (from its init)
        self._upstream: Upstream | None = None
        self._task: asyncio.Task | None = None
        self._kick = asyncio.Event()
        self.decoded = 0
        self.decode_errors = 0

    def start(self) -> None:
        self._upstream = self.relay.upstream(self.camera, self.stream)
        self._upstream.attach()
        self._task = asyncio.create_task(self._run(), name=f"detect-feed-{self.camera}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._upstream is not None:
            self._upstream.detach()
            self._upstream = None

    async def _run(self) -> None:
        """Follow the upstream for good: a failure costs what was buffered, never the feed."""
        assert self._upstream is not None
        up = self._upstream
        while True:
            while up.init is None:  # the node is away: wait for its stream
                change = up.changed()
                if up.init is None:
                    await change.wait()
            self.codec = DECODERS.get(up.init.codec, up.init.codec)
            sub = up.fanout.subscribe(f"detector {self.camera}", SUBSCRIPTION_CAPACITY)
            self._reset()
            try:
                await self._pump(sub)
            except Exception:  # a bug or a picture FFmpeg cannot convert: start over on the next keyframe
                self.decode_errors += 1
                log.exception("camera %s: detection's feed failed; starting over", self.camera)
                await asyncio.sleep(1.0)
            finally:
                up.fanout.unsubscribe(sub)

    async def _pump(self, sub: Subscription) -> None:
        while True:
            get = asyncio.ensure_future(sub.get())
            kick = asyncio.ensure_future(self._kick.wait())
            try:
                await asyncio.wait((get, kick), return_when=asyncio.FIRST_COMPLETED)
            finally:
                kick.cancel()
                got = get.done()
                if not got:
                    get.cancel()  # nothing is lost: a unit leaves the subscription only when get() returns it
            self._kick.clear()
            if got:
                unit = get.result()
                if unit is None:
                    return  # the stream ended (node gone, or a new init): start over on the next one
                self._buffer(unit, sub)
            if self.decoding:
                await self._decode_pending()

    def _buffer(self, unit: AccessUnit, sub: Subscription) -> None:
        if unit.keyframe:
            self.gop = [unit]
            self._decoded_upto = -1  # the next decode starts a fresh decoder on this keyframe
            return
        if not self.gop:
            return  # joined mid-GOP: nothing decodable until the next keyframe
        if len(self.gop) >= MAX_GOP_UNITS or sub.overflows:
            self._reset()  # an over-long GOP or a lost backlog: wait for the next keyframe
            sub.overflows = 0
            return
        self.gop.append(unit)

    def set_decoding(self, on: bool) -> None:
        """On while an event of this camera is open. Off forgets the decoder: the units buffered while off were
        never fed to it, so the next decode starts again from the GOP's keyframe."""
        if on and not self.decoding:
            self._kick.set()
        if not on:
            self._forget_decoder()
        self.decoding = on

    def _forget_decoder(self) -> None:
        """The loop's side only: a decode in flight keeps its own decoder and its result is not taken."""
        self._generation += 1
        self._decoded_upto = -1
        self._decoder = None

    def _reset(self) -> None:
        self.gop = []
        self._forget_decoder()

    async def _decode_pending(self) -> None:
        start = self._decoded_upto + 1
        units = self.gop[start:]
        if not units:
            return
        generation = self._generation
        decoder = None if start == 0 else self._decoder  # from the keyframe: a fresh decoder
        self._decoded_upto = len(self.gop) - 1
        pictures, decoder = await asyncio.to_thread(self._decode, units, decoder)
        if generation != self._generation:
            return  # decoding was switched off (or the stream reset) meanwhile
        self._decoder = decoder
        for picture in pictures:
            self.deliver(picture)

    def _decode(self, units: list[AccessUnit], decoder: VideoCodecContext | None
                ) -> tuple[list[Picture], VideoCodecContext | None]:
        """Blocking (a worker thread): feed the units in order, convert the wanted frames to RGB. Touches no
        decoder but the one it is given (or makes); returns it, None after a decoding error."""
        if decoder is None:
            decoder = cast(VideoCodecContext, av.CodecContext.create(self.codec, "r"))
            decoder.thread_count = 1  # one camera a core at most; the store has other work
        out: list[Picture] = []
        for unit in units:
            try:
                packet = av.Packet(bytes(unit.data))
                packet.pts = unit.capture_us
                frames = decoder.decode(packet)
            except av.FFmpegError as exc:
                self.decode_errors += 1
                log.warning("camera %s: cannot decode an access unit for detection: %s", self.camera, exc)
                return out, None
            for frame in frames:
                self.decoded += 1
                capture_us = frame.pts if frame.pts is not None else unit.capture_us
                if self.wanted(capture_us):
                    out.append(Picture(self.camera, capture_us, self._rgb(frame)))
        return out, decoder

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return to_rgb(frame, self.max_width)


def to_rgb(frame: av.VideoFrame, max_width: int = MAX_WIDTH) -> np.ndarray:
    """The frame as RGB, scaled to at most ``max_width`` across (blocking: call it from a worker thread)."""
    width, height = frame.width, frame.height
    if width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
