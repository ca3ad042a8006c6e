"""The capture thread: paces a source at its frame rate, encodes, hands units to the loop.

Capture and encode never wait for a consumer: units go to the event loop with
``call_soon_threadsafe`` and the loop fans them out. If rendering plus encoding
falls behind real time, whole frame slots are skipped and counted as dropped,
so capture times stay true.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av

from node.capture.encode import EncodedUnit
from node.capture.encoders import VideoEncoder
from node.sources.base import CameraSource
from shared.clock import now_us

log = logging.getLogger(__name__)


def encode_and_hand_on(encoder: VideoEncoder, frame: av.VideoFrame, capture_us: int,
                       on_unit: Callable[[EncodedUnit], None],
                       on_frame: Callable[[av.VideoFrame, int], None] | None,
                       on_encode_time: Callable[[float], None] | None) -> float:
    """Encode one frame, hand its units and the frame on; returns the seconds the encode took."""
    started = time.perf_counter()
    units = encoder.encode(frame, capture_us)
    elapsed = time.perf_counter() - started
    if on_encode_time is not None:
        on_encode_time(elapsed)
    for unit in units:
        on_unit(unit)
    if on_frame is not None:
        on_frame(frame, capture_us)
    return elapsed


@dataclass
class SubStream:
    """A camera's second, smaller encode (``substream``), on the same thread: the ISP's own small picture when
    the source has one (a Pi's lores stream, ``sub_frame``), else the same frame scaled down."""

    encoder: VideoEncoder
    width: int
    height: int
    on_unit: Callable[[EncodedUnit], None]
    # Privacy masks and timestamp at this size, for a picture that did not come from the filtered main frame.
    frame_filter: Callable[[av.VideoFrame, int], None] | None = None
    scaled: int = 0  # frames scaled from main (libswscale)
    from_source: int = 0  # frames the source made at this size (the ISP)

    def encode(self, frame: av.VideoFrame, capture_us: int, small: av.VideoFrame | None = None) -> None:
        if small is not None and (small.width, small.height) == (self.width, self.height):
            if self.frame_filter is not None:
                self.frame_filter(small, capture_us)
            self.from_source += 1
        else:
            small = frame.reformat(width=self.width, height=self.height)  # libswscale, ~1 ms for 720p -> 360p
            self.scaled += 1
        for unit in self.encoder.encode(small, capture_us):
            self.on_unit(unit)


class CaptureThread(threading.Thread):
    def __init__(
        self,
        camera_id: str,
        source: CameraSource,
        encoder: VideoEncoder,
        on_unit: Callable[[EncodedUnit], None],
        on_drop: Callable[[int], None],
        on_end: Callable[[BaseException | None], None],
        on_encode_time: Callable[[float], None] | None = None,
        on_frame: Callable[[av.VideoFrame, int], None] | None = None,
        frame_filter: Callable[[av.VideoFrame, int], None] | None = None,
        sub: SubStream | None = None,
    ) -> None:
        super().__init__(name=f"capture-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self.source, self.encoder = source, encoder
        self._on_unit, self._on_drop, self._on_end = on_unit, on_drop, on_end
        self._on_encode_time = on_encode_time  # the /metrics histogram (node/serve/metrics.py)
        # Raw frames for the motion detector: each read() is a fresh frame, so handing it on copies nothing.
        self._on_frame = on_frame
        self._filter = frame_filter  # privacy masks, timestamp (node/capture/filters.py): before the one encode
        self._sub = sub
        self._stop_event = threading.Event()
        self.encode_seconds = 0.0

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        error: BaseException | None = None
        try:
            self._loop()
            for unit in self.encoder.flush():
                self._on_unit(unit)
            if self._sub is not None:
                for unit in self._sub.encoder.flush():
                    self._sub.on_unit(unit)
        except BaseException as exc:  # reported to the loop, which logs and marks the camera down
            error = exc
        finally:
            self.source.close()
            self._on_end(error)

    def _loop(self) -> None:
        interval = 1.0 / self.source.fps
        started = time.monotonic()
        index = 0
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
                self._on_drop(missed)
                continue
            frame = self.source.read(index)
            capture = now_us()
            if self._filter is not None:
                self._filter(frame, capture)
            self.encode_seconds += encode_and_hand_on(self.encoder, frame, capture, self._on_unit,
                                                      self._on_frame, self._on_encode_time)
            if self._sub is not None:  # a source's own small picture (Picamera2's lores) saves the scaling
                self._sub.encode(frame, capture, getattr(self.source, "sub_frame", None))
            index += 1
