"""CameraMaster: the one owner of every camera on a node.

Each camera gets a capture thread (source → encoder, encoded once) and a
``FanOut`` on the event loop. Live viewers, the recorder and later the motion
detector are all just subscribers; none of them can slow capture down.

A camera whose source is unavailable at start (``SourceUnavailable``: a Pi camera
missing, busy or failing to start) does not stop the node: it is ``stalled`` with
the reason, reported as a stall is, and opened again with backoff
(node/capture/opener.py); the capture thread starts once it opens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from node.capture.encode import EncodedUnit, H264Encoder
from node.capture.encoders import codec_family, open_encoder
from node.capture.filters import build_filter
from node.capture.opener import SourceOpener
from node.capture.sink import CaptureSink, StreamFormat
from node.capture.stream import StreamThread
from node.capture.substream import SubStream
from node.capture.thread import CaptureThread
from node.capture.timebase import TimeBase
from node.motion.config import make_detector
from node.motion.worker import MotionWorker
from node.motion.zones import label_zones, named_zones
from node.sources import Source, open_source
from node.sources.base import FrameSource, PacketSource, SourceUnavailable
from shared.config import CameraConfig
from shared.fanout import AccessUnit, FanOut, Subscription
from shared.protocol.health import CameraHealth, SubstreamFrames

log = logging.getLogger(__name__)
RATE_WINDOW_S = 5.0
# How long Camera.stop waits for its capture thread (a read blocked on a camera is aborted first); past it
# the camera is ended without it, and the daemon thread goes with the process.
STOP_TIMEOUT_S = 10.0


@dataclass
class CameraStats:
    frames_encoded: int = 0
    frames_dropped: int = 0
    bytes_encoded: int = 0
    keyframes: int = 0
    last_capture_us: int = 0
    # (monotonic time, bytes) of recent units, for fps and bitrate over a short window
    recent: deque[tuple[float, int]] = field(default_factory=deque)

    def record(self, size: int, keyframe: bool, capture_us: int) -> None:
        now = time.monotonic()
        self.frames_encoded += 1
        self.bytes_encoded += size
        self.keyframes += keyframe
        self.last_capture_us = capture_us
        self.recent.append((now, size))
        while self.recent and self.recent[0][0] < now - RATE_WINDOW_S:
            self.recent.popleft()

    def rates(self) -> tuple[float, float]:
        """(frames per second, bits per second) over the last few seconds."""
        if len(self.recent) < 2:
            return 0.0, 0.0
        span = self.recent[-1][0] - self.recent[0][0]
        if span <= 0:
            return 0.0, 0.0
        frames = len(self.recent) - 1
        bits = 8 * sum(size for _, size in list(self.recent)[1:])
        return frames / span, bits / span


class Camera:
    def __init__(self, config: CameraConfig, timebase: TimeBase | None = None) -> None:
        self.config = config
        self.id = config.id
        self.fanout = FanOut()
        self.stats = CameraStats()
        self.encoder_name = H264Encoder.name
        self.state = "starting"
        self.error: str | None = None
        self.settings: dict = {}  # runtime settings pushed by the store (recording mode, ...)
        self.on_encode_time: Callable[[float], None] | None = None  # set by node/serve/metrics.py before start
        # (camera, start_us, end_us or None while it goes on, why): a frame source stalled; set by the node
        self.on_stall: Callable[[str, int, int | None, str], None] | None = None
        self.stalls = 0
        self.motion: MotionWorker | None = None  # set by the node before start, if detection is on
        self.codec = codec_family(config.codec)  # what this camera sends: h264 | hevc
        self.sub_fanout: FanOut | None = None  # the smaller second encode, when configured
        self.sub: SubStream | None = None
        self._thread: CaptureThread | StreamThread | None = None
        self._opener: SourceOpener | None = None  # opening a source unavailable at start
        self._waiting_since: int | None = None  # when it was found unavailable (the stall's start)
        self._stopping = False
        self._ended = asyncio.Event()
        # Every frame's capture time (docs/time.md); the recorder raises its floor before start.
        self.timebase = timebase or TimeBase()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            source = open_source(self.config)
        except SourceUnavailable as exc:  # hardware, not config: the node runs on without this camera for now
            self._wait_for_source(loop, str(exc))
            return
        self._open(loop, source)

    def _open(self, loop: asyncio.AbstractEventLoop, source: Source) -> None:
        try:
            self._start(loop, source)
        except BaseException:
            source.close()  # whatever failed after the open: the camera is not left held
            raise
        self.state = "up"

    def _wait_for_source(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        """Stalled from the start: said why (the camera-stalled event opens), opened again with backoff."""
        start_us = self._waiting_since = self.timebase.now_us()
        log.error("camera %s: %s; the node runs on and opens it again", self.id, why)
        self._stalled(start_us, None, why)

        def on_why(now: str) -> None:
            loop.call_soon_threadsafe(self._stalled, start_us, None, now)

        def on_open(source: Source) -> None:
            loop.call_soon_threadsafe(self._opened, loop, source)

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(self._open_failed, exc)

        self._opener = SourceOpener(self.config, why, on_why, on_open, on_error)
        self._opener.start()

    def _opened(self, loop: asyncio.AbstractEventLoop, source: Source) -> None:
        """On the loop: the source unavailable at start opened; capture starts and the stall ends."""
        if self._stopping:
            source.close()
            return
        why = self.error or "unavailable"
        try:
            self._open(loop, source)
        except Exception as exc:  # e.g. its encoder does not open: down, as at start
            self._open_failed(exc)
            return
        assert self._waiting_since is not None
        log.warning("camera %s: opened, %.1f s after it was unavailable at start", self.id,
                    (self.timebase.now_us() - self._waiting_since) / 1e6)
        self._stalled(self._waiting_since, self.timebase.now_us(), why)

    def _open_failed(self, error: BaseException) -> None:
        why = self.error or "unavailable"
        self._finish(error)  # down with the error
        if self._waiting_since is not None:
            self._stalled(self._waiting_since, self.timebase.now_us(), f"{why}; then: {self.error}")

    def _start(self, loop: asyncio.AbstractEventLoop, source: FrameSource | PacketSource) -> None:
        motion = self.motion

        def on_unit(unit: EncodedUnit) -> None:
            loop.call_soon_threadsafe(self._publish, unit)
            if motion is not None:
                motion.offer_unit(unit)

        def on_drop(count: int) -> None:
            loop.call_soon_threadsafe(self._dropped, count)

        def on_end(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(self._finish, error)

        def on_format(fmt: StreamFormat) -> None:
            # On the capture thread, before the stream's first frame: the detector must expect its size.
            if motion is not None:
                motion.detector = make_detector(motion.config, fmt.width, fmt.height, fmt.fps)
            loop.call_soon_threadsafe(self._stream_format, fmt)

        def on_stall(start_us: int, end_us: int | None, why: str) -> None:
            loop.call_soon_threadsafe(self._stalled, start_us, end_us, why)

        sink = CaptureSink(on_unit, on_drop, on_end, on_format, self.on_encode_time, sub=self._open_substream(loop),
                           on_stall=on_stall)
        if isinstance(source, PacketSource):
            # Passes H.264 through, or opens its encoder once it knows the stream (node/capture/stream.py);
            # a passed-through stream is decoded for the detector only if it looks at pictures.
            self.encoder_name = "connecting"
            sink.on_frame = motion.offer_frame if motion is not None and motion.wants_frames else None
            self._thread = StreamThread(self.config, source, sink, self.timebase)
        else:
            # The size the source really gives (a Pi camera's configuration as libcamera validated it) is what
            # is encoded, recorded and described to viewers.
            if (source.width, source.height) != (self.config.width, self.config.height):
                self.config = replace(self.config, width=source.width, height=source.height)
                if motion is not None:
                    motion.detector = make_detector(motion.config, source.width, source.height, source.fps)
            encoder = open_encoder(self.config)  # probes hardware once
            self.encoder_name = encoder.name
            sink.on_frame = motion.offer_frame if motion is not None else None
            self._thread = CaptureThread(self.id, source, encoder, sink, self.timebase, build_filter(self.config))
        if motion is not None:
            motion.start()
        self._thread.start()

    def _open_substream(self, loop: asyncio.AbstractEventLoop) -> SubStream | None:
        if self.config.substream is None:
            return None
        width, height = self.config.substream
        # Its own bitrate cap, from its own size; the same encoder choice and GOP as the main stream.
        small = replace(self.config, width=width, height=height, bitrate_bps=None)
        encoder = open_encoder(small)
        fanout = self.sub_fanout = FanOut()

        def on_sub_unit(unit: EncodedUnit) -> None:
            loop.call_soon_threadsafe(fanout.publish, AccessUnit.build(unit.capture_us, unit.keyframe, unit.data))

        self.sub = SubStream(encoder, width, height, on_sub_unit, build_filter(self.config, width, height))
        return self.sub

    def _stream_format(self, fmt: StreamFormat) -> None:
        """A stream's own size and rate win over the config's: the recorder and /live describe what is sent."""
        self.config = replace(self.config, width=fmt.width, height=fmt.height, fps=max(1, round(fmt.fps)))
        self.encoder_name, self.codec = fmt.encoder, fmt.codec

    def _publish(self, unit: EncodedUnit) -> None:
        self.stats.record(len(unit.data), unit.keyframe, unit.capture_us)
        self.fanout.publish(AccessUnit.build(unit.capture_us, unit.keyframe, unit.data))

    def _dropped(self, count: int) -> None:
        self.stats.frames_dropped += count

    def _stalled(self, start_us: int, end_us: int | None, why: str) -> None:
        """A stall began (``end_us`` None) or ended: the state, and the event that explains the gap."""
        if self.state in ("stopped", "down"):
            pass
        elif end_us is None:
            if self.state != "stalled":
                self.stalls += 1
            self.state, self.error = "stalled", why
        else:
            self.state, self.error = "up", None
        if self.on_stall is not None:
            self.on_stall(self.id, start_us, end_us, why)

    def _finish(self, error: BaseException | None) -> None:
        if self._ended.is_set():
            return  # a capture thread that ended after Camera.stop gave up waiting for it
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"
            log.error("camera %s stopped: %s", self.id, self.error)
        self.state = "down" if error else "stopped"
        self.fanout.end()
        if self.sub_fanout is not None:
            self.sub_fanout.end()
        self._ended.set()

    def subscribe(self, name: str, capacity: int) -> Subscription:
        return self.fanout.subscribe(name, capacity)

    async def stop(self) -> None:
        """Stop capture; the encoder is flushed and every subscriber sees the end."""
        self._stopping = True
        if self._thread is None:
            if self._opener is not None:  # never opened since start: its stall ends at the stop
                self._opener.stop()
                await asyncio.to_thread(self._opener.join, STOP_TIMEOUT_S)
                if self.state == "stalled" and self._waiting_since is not None:
                    why = f"{self.error} (until the stop)"
                    self._stalled(self._waiting_since, max(self._waiting_since, self.timebase.now_us()), why)
            self._finish(None)
            return
        self._thread.stop()
        try:
            await asyncio.wait_for(self._ended.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("camera %s: capture did not stop within %.0f s; ending it without waiting", self.id,
                      STOP_TIMEOUT_S)
            self._finish(TimeoutError(f"capture did not stop within {STOP_TIMEOUT_S:.0f} s"))
        if self.motion is not None:
            await asyncio.to_thread(self.motion.stop)  # closes an open event: it is reported too

    @property
    def encode_seconds(self) -> float:
        return self._thread.encode_seconds if self._thread else 0.0

    def health(self) -> CameraHealth:
        """This camera's part of the node's /health; the node adds its ``recording``."""
        fps, bitrate = self.stats.rates()
        capture = self._thread.health() if self._thread is not None else None
        return CameraHealth(
            state=capture.state if capture is not None and capture.state is not None else self.state,
            error=self.error,
            source=self.config.source,
            width=self.config.width,
            height=self.config.height,
            configured_fps=self.config.fps,
            fps=round(fps, 2),
            bitrate_bps=round(bitrate),
            frames_encoded=self.stats.frames_encoded,
            frames_dropped=self.stats.frames_dropped,
            encoder=self.encoder_name,
            codec=self.codec,
            encode_seconds=round(self.encode_seconds, 3),
            subscribers=len(self.fanout.subscriptions),
            sub_subscribers=len(self.sub_fanout.subscriptions) if self.sub_fanout is not None else None,
            last_capture_us=self.stats.last_capture_us,
            settings=self.settings,
            motion=self.motion.health() if self.motion is not None else None,
            substream=(f"{self.config.substream[0]}x{self.config.substream[1]}"
                       if self.sub_fanout is not None and self.config.substream else None),
            # Where the sub stream's pictures came from: the source's own (a Pi's ISP lores) or libswscale.
            substream_frames=(SubstreamFrames(self.sub.from_source, self.sub.scaled) if self.sub is not None
                              else None),
            stream=capture.stream if capture is not None else None,
            clock=capture.clock if capture is not None else None,
            label_zones=label_zones(self.motion.config.zones) if self.motion is not None else (),
            zones=named_zones(self.motion.config.zones) if self.motion is not None else (),
            stalls=self.stalls,
        )


class CameraMaster:
    def __init__(self, cameras: tuple[CameraConfig, ...]) -> None:
        self.cameras: dict[str, Camera] = {c.id: Camera(c) for c in cameras}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for camera in self.cameras.values():
            camera.start(loop)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.cameras.values()))
