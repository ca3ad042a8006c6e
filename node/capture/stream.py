"""The capture thread of a PyAV source: pass H.264 through, or decode and encode the rest.

An H.264 stream is never decoded to be recorded or streamed: each demuxed
packet (Annex-B, parameter sets on keyframes) becomes an ``EncodedUnit`` as it
is, and goes to the same ``CaptureSink`` the frame sources use. Decoding happens
only for a frame consumer (the motion detector's ``on_frame``, a sub stream), or
when the camera needs filters (masks, timestamp) or another codec: then the
stream is transcoded like any non-H.264 source.

A file is paced by its timestamps (it plays in real time, ``loop`` restarts it
with time running on). A live source (url, v4l2) is timed by arrival; when it
drops (error, end, or silent for ``READ_TIMEOUT_S``) it is reconnected with
backoff, and until the next keyframe nothing is published: the gap is a gap,
in /health (``state``, ``reconnects``, ``source_error``) and in the recording.

Times: both kinds keep the spacing of the stream's own timestamps, anchored to
the camera's ``TimeBase`` (``_anchored``); see docs/time.md.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from node.capture.encode import EncodedUnit
from node.capture.encoders import VideoEncoder, codec_family, open_encoder
from node.capture.filters import FrameFilter, build_filter
from node.capture.sink import CaptureSink, StreamFormat
from node.capture.thread import CaptureHealth
from node.capture.timebase import TimeBase
from node.sources.base import PacketSource, SourceError
from node.sources.nal import ParameterSets
from shared.backoff import Backoff
from shared.config import CameraConfig
from shared.protocol.health import StreamHealth

log = logging.getLogger(__name__)
MAX_LAG_US = 2_000_000  # a frame stamped this far before its arrival: the source's clock jumped, re-anchor


class StreamThread(threading.Thread):
    def __init__(self, camera: CameraConfig, source: PacketSource, sink: CaptureSink,
                 timebase: TimeBase | None = None, backoff: Backoff | None = None) -> None:
        super().__init__(name=f"capture-{camera.id}", daemon=True)
        self.camera, self.source, self.sink = camera, source, sink
        self.timebase = timebase or TimeBase()
        self._backoff = backoff or Backoff(0.25, 4.0)  # a camera on the LAN: retrying often costs nothing
        self._stop_event = threading.Event()
        # Passing through needs the stream to already be what we would send: H.264 (or a camera set to H.265
        # fed H.265), and no filter to draw into the picture.
        self.wants_filters = bool(camera.masks or camera.timestamp)
        self.state = "connecting"
        self.mode = ""
        self.reconnects = 0
        self.last_error: str | None = None
        self.encode_seconds = 0.0
        self.cpu_seconds = 0.0  # this thread's own CPU time (time.thread_time), for /health
        self.keyframes_completed = 0
        self._encoder: VideoEncoder | None = None
        self._filter: FrameFilter | None = None
        self._decoder: VideoCodecContext | None = None
        self._last_us = 0
        self._offset_us: int | None = None  # capture time minus stream time (see _anchored)
        self._force_keyframe = False  # the time base stepped: the next re-encoded frame starts a segment

    def stop(self) -> None:
        self._stop_event.set()

    def health(self) -> CaptureHealth:
        stream = StreamHealth(mode=self.mode, reconnects=self.reconnects, source_error=self.last_error,
                              thread_cpu_s=round(self.cpu_seconds, 3), keyframes_completed=self.keyframes_completed)
        return CaptureHealth(self.timebase.health(), self.state, stream)

    def run(self) -> None:
        error: BaseException | None = None
        try:
            self._run()
        except BaseException as exc:  # reported to the loop, which logs and marks the camera down
            error = exc
        finally:
            self._finish_encoder()
            if self.sink.sub is not None:
                try:
                    self.sink.sub.flush()
                except (av.FFmpegError, OSError) as exc:
                    log.warning("camera %s: sub stream flush failed: %s", self.camera.id, exc)
            self.source.close()
            self.state = "stopped" if error is None else "down"
            self.sink.on_end(error)

    def _run(self) -> None:
        live = self.source.live
        while not self._stop_event.is_set():
            if not self.source.connected:
                try:
                    self.source.connect()
                except SourceError as exc:
                    if not live:
                        raise
                    self._dropped(str(exc))
                    continue
            self._begin()
            try:
                ended = self._pump()
            except (av.FFmpegError, OSError) as exc:
                if not live:
                    raise
                self.source.disconnect()
                self._dropped(f"{type(exc).__name__}: {exc}")
                continue
            if ended and not live and not self.source.loop:
                return  # the file is over: the camera stops cleanly
            if ended and live:
                self.source.disconnect()
                self._dropped("the stream ended")

    def _dropped(self, why: str) -> None:
        """A live source is gone: say so, wait (backoff), and let the loop reconnect."""
        if self.state == "up":
            log.warning("camera %s: source dropped (%s); reconnecting", self.camera.id, why)
        self.state, self.last_error = "reconnecting", why
        self.reconnects += 1
        self._stop_event.wait(self._backoff.next_delay())

    def _begin(self) -> None:
        src = self.source
        self._offset_us = None  # a new connection may bring a new stream clock
        out_codec = codec_family(self.camera.codec)
        passthrough = src.codec == out_codec and not self.wants_filters
        self.mode = "passthrough" if passthrough else "transcode"
        self._finish_encoder()
        if passthrough:
            self._params = ParameterSets(src.codec, src.extradata)
            wants_pictures = self.sink.on_frame is not None or self.sink.sub is not None
            self._decoder = (cast(VideoCodecContext, av.CodecContext.create(src.codec, "r"))
                             if wants_pictures else None)
            name = "passthrough"
        else:
            self._encoder = open_encoder(self.camera, src.width, src.height, src.fps)
            self._filter = build_filter(self.camera, src.width, src.height)
            name = self._encoder.name
        self.sink.on_format(StreamFormat(src.width, src.height, src.fps, out_codec, name))
        log.info("camera %s: %s %s %dx%d@%.2f via %s", self.camera.id, src.target, src.codec,
                 src.width, src.height, src.fps, name)

    def _pump(self) -> bool:
        """Publish packets until stop (False) or the end of the input (True; a looped file rewinds first)."""
        live, src = self.source.live, self.source
        mono0 = time.monotonic()
        offset_us = 0  # media time at the start of this loop pass
        first_ts: int | None = None
        media_us = 0
        waiting_for_key = True
        interval_us = int(1_000_000 / src.fps)
        while True:
            for packet in src.packets():
                if self._stop_event.is_set():
                    return False
                ts = packet.dts if packet.dts is not None else packet.pts
                # A passed-through stream can only be cut at a keyframe: a clock step waits for one.
                may_step = self._encoder is not None or bool(packet.is_keyframe)
                if ts is None:
                    capture = self.timebase.stamp(may_step)
                elif live:
                    capture = self._anchored(int(ts * src.time_base * 1_000_000), may_step)
                else:
                    if first_ts is None:
                        first_ts = ts
                    media_us = offset_us + int((ts - first_ts) * src.time_base * 1_000_000)
                    delay = mono0 + media_us / 1e6 - time.monotonic()
                    if delay > 0 and self._stop_event.wait(delay):
                        return False
                    capture = self._anchored(media_us, may_step)
                if self.timebase.stepped and self._encoder is not None:
                    self._force_keyframe = True
                capture = max(capture, self._last_us + 1)  # strictly increasing, whatever the source says
                if waiting_for_key and not packet.is_keyframe:
                    self.sink.on_drop(1)  # after a (re)connect, nothing decodes before a keyframe
                    continue
                waiting_for_key = False
                self._last_us = capture
                self._publish_packet(packet, capture)
                if self.state != "up":
                    self.state = "up"
                    self._backoff.reset()
                self.cpu_seconds = time.thread_time()
            if live or not src.loop:
                return True
            src.rewind()
            offset_us, first_ts = media_us + interval_us, None

    def _anchored(self, stream_us: int, may_step: bool) -> int:
        """Capture time of a frame: the stream's own clock, anchored to the earliest arrival seen.

        Arrival times (the camera's ``TimeBase``) alone are bursty (demuxer probing, TCP and server
        buffering deliver whole GOPs at once); the stream's timestamps keep the real spacing. The offset
        follows the smallest observed delay, so a frame is never stamped after it arrived, and jumps when
        the source's clock does or the time base follows a step of the wall clock. A file's packets
        arrive when pacing releases them, so for a file this is its start plus its media time.
        """
        arrival = self.timebase.stamp(may_step)
        offset = arrival - stream_us
        if (self._offset_us is None or offset < self._offset_us or offset - self._offset_us > MAX_LAG_US
                or self.timebase.stepped):
            self._offset_us = offset
        return stream_us + self._offset_us

    def _publish_packet(self, packet: av.Packet, capture: int) -> None:
        if self._encoder is None:
            keyframe = bool(packet.is_keyframe)
            data = self._params.fix(bytes(packet), keyframe)
            self.keyframes_completed = self._params.inserted
            self.sink.on_unit(EncodedUnit(capture, keyframe, data))
            if self._decoder is not None:
                for frame in self._decoder.decode(av.Packet(data)):  # type: ignore[arg-type]  # any buffer
                    if self.sink.on_frame is not None:
                        self.sink.on_frame(frame, capture)
                    if self.sink.sub is not None:
                        self.sink.sub.encode(frame, capture)
            return
        for frame in self.source.decode(packet):
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            if self._filter is not None:
                frame.make_writable()  # the decoder may still hold this picture as a reference
                self._filter(frame, capture)
            if self._force_keyframe:
                frame.pict_type = PictureType.I
                self._force_keyframe = False
            self.encode_seconds += self.sink.encode(self._encoder, frame, capture)
            if self.sink.sub is not None:
                self.sink.sub.encode(frame, capture)

    def _finish_encoder(self) -> None:
        encoder, self._encoder = self._encoder, None
        if encoder is None:
            return
        try:
            self.sink.flush(encoder)
        except (av.FFmpegError, OSError) as exc:
            log.warning("camera %s: encoder flush failed: %s", self.camera.id, exc)
