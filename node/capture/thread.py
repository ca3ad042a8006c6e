"""The capture thread of a frame source: paces it at its frame rate, stamps, encodes, hands units on.

Capture and encode never wait for a consumer: units go to the ``CaptureSink``,
whose callbacks hop to the event loop, and the loop fans them out. If rendering
plus encoding falls behind real time, whole frame slots are skipped and counted
as dropped, so capture times stay true. A source the sensor paces (``paced``:
Picamera2, whose ``capture_request`` waits for the sensor's next frame) is not
paced again; it says how many frames went by untaken (``skipped``), and those
are the drops. Each frame is stamped by the camera's ``TimeBase`` right after
it is read, less the source's ``age_us`` (when its sensor read it); where that
follows a forward step of the wall clock the frame is encoded as a keyframe, so
the recording is cut there.

A source that stops delivering raises ``SourceStalled`` having closed itself:
the thread reports the stall (``sink.on_stall``, open), reopens the source with
backoff until a frame comes, then reports the stall closed, its span the gap;
the first frame after it is a keyframe. ``stop`` calls the source's ``abort`` so
a read waiting for a frame gives up at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
from av.video.frame import PictureType

from node.capture.encoders import VideoEncoder
from node.capture.sink import CaptureSink
from node.capture.timebase import TimeBase
from node.sources.base import FrameSource, SourceError, SourceStalled
from shared.backoff import Backoff
from shared.protocol.health import ClockHealth, StreamHealth

log = logging.getLogger(__name__)
# A stalled source is reopened (and one unavailable at start opened, node/capture/opener.py) after 1 s, doubling
# to 30 s: reopening a Pi camera costs a few hundred ms.
REOPEN_FIRST_S, REOPEN_MAX_S = 1.0, 30.0


@dataclass(frozen=True)
class CaptureHealth:
    """What a capture thread adds to its camera's health (node/capture/master.py ``Camera.health``)."""

    clock: ClockHealth
    state: str | None = None  # a packet source's own state (connecting, up, reconnecting, ...) is the camera's
    stream: StreamHealth | None = None  # packet sources only


class CaptureThread(threading.Thread):
    def __init__(self, camera_id: str, source: FrameSource, encoder: VideoEncoder, sink: CaptureSink,
                 timebase: TimeBase, frame_filter: Callable[[av.VideoFrame, int], None] | None = None,
                 backoff: Backoff | None = None) -> None:
        super().__init__(name=f"capture-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self.source, self.encoder, self.sink, self.timebase = source, encoder, sink, timebase
        self._filter = frame_filter  # privacy masks, timestamp (node/capture/filters.py): before the one encode
        self._stop_event = threading.Event()
        self._backoff = backoff or Backoff(REOPEN_FIRST_S, REOPEN_MAX_S)
        self.encode_seconds = 0.0
        self.state: str | None = None  # "stalled" from a stall until a frame comes again
        # (start_us, why it stalled, what it says now) of the stall going on: the event closes with the latest
        self._stall: tuple[int, str, str] | None = None

    def stop(self) -> None:
        self._stop_event.set()
        abort = getattr(self.source, "abort", None)
        if abort is not None:
            abort()  # a read waiting for a frame gives up now

    def health(self) -> CaptureHealth:
        return CaptureHealth(self.timebase.health(), self.state)

    def run(self) -> None:
        error: BaseException | None = None
        try:
            self._loop()
            self.sink.flush(self.encoder)
            if self.sink.sub is not None:
                self.sink.sub.flush()
        except BaseException as exc:  # reported to the loop, which logs and marks the camera down
            error = exc
        finally:
            self.source.close()
            if self._stall is not None:  # stopped while stalled: the gap ends here
                start_us, _, why = self._stall
                self._stall, self.state = None, None  # the camera is stopped or down now, not stalled
                self.sink.on_stall(start_us, max(start_us, self.timebase.now_us()), f"{why} (until the stop)")
            self.sink.on_end(error)

    def _loop(self) -> None:
        interval = 1.0 / self.source.fps
        paced = bool(getattr(self.source, "paced", False))
        started = time.monotonic()
        index = 0
        sink = self.sink
        while not self._stop_event.is_set():
            due = started + index * interval
            delay = due - time.monotonic()
            if paced:
                pass  # the sensor's beat paces it; its skipped frames are the drops
            elif delay > 0:
                if self._stop_event.wait(delay):
                    break
            elif -delay >= interval:
                # More than a whole frame late: skip the slots we missed.
                missed = int(-delay / interval)
                index += missed
                sink.on_drop(missed)
                continue
            try:
                frame = self.source.read(index)
            except SourceStalled as exc:
                if self._stop_event.is_set():
                    break
                self._stalled(str(exc))
                continue
            if paced and (skipped := int(getattr(self.source, "skipped", 0))):
                sink.on_drop(skipped)
            capture = self.timebase.stamp(age_us=int(getattr(self.source, "age_us", 0)))
            if self._stall is not None:
                self._recovered(capture)
                frame.pict_type = PictureType.I  # the first picture after the gap starts a segment
            if self.timebase.stepped:
                frame.pict_type = PictureType.I  # the stamps jumped: start a segment here
            if self._filter is not None:
                self._filter(frame, capture)
            self.encode_seconds += sink.encode(self.encoder, frame, capture)
            if sink.sub is not None:  # a source's own small picture (Picamera2's lores) saves the scaling
                sink.sub.encode(frame, capture, self.source.sub_frame)
            index += 1

    def _stalled(self, why: str) -> None:
        """The source stopped (and closed itself): say so once, then reopen it with backoff until it opens."""
        if self._stall is None:
            start_us = self.timebase.last_us or self.timebase.now_us()
            self._stall = (start_us, why, why)
            self.state = "stalled"
            log.error("camera %s stalled: %s; reopening it", self.camera_id, why)
            self.sink.on_stall(start_us, None, why)
        reopen = getattr(self.source, "reopen", None)
        if reopen is None:
            raise SourceError(why)  # a source that cannot reopen: the camera is down
        start_us, first_why, said = self._stall
        while not self._stop_event.wait(self._backoff.next_delay()):
            try:
                reopen()
                return
            except SourceError as exc:
                log.warning("camera %s: still stalled: %s", self.camera_id, exc)
                now = f"{first_why}; reopening: {exc}"
                if now != said:  # the reason changed (the camera is gone now, say): the event and /health say so
                    said = now
                    self._stall = (start_us, first_why, said)
                    self.sink.on_stall(start_us, None, now)

    def _recovered(self, capture_us: int) -> None:
        assert self._stall is not None
        start_us, _, why = self._stall
        self._stall, self.state = None, None
        self._backoff.reset()
        log.warning("camera %s: frames again after %.1f s stalled", self.camera_id, (capture_us - start_us) / 1e6)
        self.sink.on_stall(start_us, max(start_us, capture_us), why)
