"""The capture thread of a frame source: paces it at its frame rate, stamps, encodes, hands units on.

Capture and encode never wait for a consumer: units go to the ``CaptureSink``,
whose callbacks hop to the event loop, and the loop fans them out. If rendering
plus encoding falls behind real time, whole frame slots are skipped and counted
as dropped, so capture times stay true. Each frame is stamped by the camera's
``TimeBase`` right after it is read; where that follows a forward step of the
wall clock the frame is encoded as a keyframe, so the recording is cut there.
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
from node.sources.base import FrameSource
from shared.protocol.health import ClockHealth, StreamHealth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureHealth:
    """What a capture thread adds to its camera's health (node/capture/master.py ``Camera.health``)."""

    clock: ClockHealth
    state: str | None = None  # a packet source's own state (connecting, up, reconnecting, ...) is the camera's
    stream: StreamHealth | None = None  # packet sources only


class CaptureThread(threading.Thread):
    def __init__(self, camera_id: str, source: FrameSource, encoder: VideoEncoder, sink: CaptureSink,
                 timebase: TimeBase, frame_filter: Callable[[av.VideoFrame, int], None] | None = None) -> None:
        super().__init__(name=f"capture-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self.source, self.encoder, self.sink, self.timebase = source, encoder, sink, timebase
        self._filter = frame_filter  # privacy masks, timestamp (node/capture/filters.py): before the one encode
        self._stop_event = threading.Event()
        self.encode_seconds = 0.0

    def stop(self) -> None:
        self._stop_event.set()

    def health(self) -> CaptureHealth:
        return CaptureHealth(self.timebase.health())

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
            self.sink.on_end(error)

    def _loop(self) -> None:
        interval = 1.0 / self.source.fps
        started = time.monotonic()
        index = 0
        sink = self.sink
        while not self._stop_event.is_set():
            due = started + index * interval
            delay = due - time.monotonic()
            if delay > 0:
                if self._stop_event.wait(delay):
                    break
            elif -delay >= interval:
                # More than a whole frame late: skip the slots we missed.
                missed = int(-delay / interval)
                index += missed
                sink.on_drop(missed)
                continue
            frame = self.source.read(index)
            capture = self.timebase.stamp()
            if self.timebase.stepped:
                frame.pict_type = PictureType.I  # the stamps jumped: start a segment here
            if self._filter is not None:
                self._filter(frame, capture)
            self.encode_seconds += sink.encode(self.encoder, frame, capture)
            if sink.sub is not None:  # a source's own small picture (Picamera2's lores) saves the scaling
                sink.sub.encode(frame, capture, self.source.sub_frame)
            index += 1
