"""Where a capture thread hands what it makes: one object instead of loose callbacks.

Both capture threads (node/capture/thread.py for frame sources, node/capture/stream.py
for packet sources) hand encoded units, drops, the stream's format, encode times,
raw frames and their end to a ``CaptureSink``, and encode a camera's second,
smaller picture through its ``sub`` (node/capture/substream.py). Every callback
runs on the capture thread: ``Camera.start`` (node/capture/master.py) builds one
that hops to the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import av

from node.capture.encode import EncodedUnit
from node.capture.encoders import VideoEncoder
from node.capture.substream import SubStream


@dataclass(frozen=True)
class StreamFormat:
    width: int
    height: int
    fps: float
    codec: str  # what goes out: h264 | hevc
    encoder: str  # "passthrough" or the encoder's name


def _ignore(*_: object) -> None:
    pass


@dataclass
class CaptureSink:
    on_unit: Callable[[EncodedUnit], None]
    on_drop: Callable[[int], None] = _ignore  # frame slots skipped (late capture, no keyframe yet)
    on_end: Callable[[BaseException | None], None] = _ignore  # the thread is done: None, or why it failed
    # A packet source's stream as it really is, announced before its first unit (and again on reconnects).
    on_format: Callable[[StreamFormat], None] = _ignore
    on_encode_time: Callable[[float], None] | None = None  # seconds per encode, for the /metrics histogram
    # Raw frames and their capture time, for the motion detector: a packet source decodes a passed-through
    # stream only when this is set (or a sub stream needs pictures).
    on_frame: Callable[[av.VideoFrame, int], None] | None = None
    sub: SubStream | None = None
    # A frame source that stopped delivering: (start_us, None, why) when it stalls, then (start_us, end_us, why)
    # once frames come again (or capture stops): the gap in the recording.
    on_stall: Callable[[int, int | None, str], None] = _ignore

    def encode(self, encoder: VideoEncoder, frame: av.VideoFrame, capture_us: int) -> float:
        """Encode one frame, hand its units and the frame on; returns the seconds the encode took."""
        started = time.perf_counter()
        units = encoder.encode(frame, capture_us)
        elapsed = time.perf_counter() - started
        if self.on_encode_time is not None:
            self.on_encode_time(elapsed)
        for unit in units:
            self.on_unit(unit)
        if self.on_frame is not None:
            self.on_frame(frame, capture_us)
        return elapsed

    def flush(self, encoder: VideoEncoder) -> None:
        for unit in encoder.flush():
            self.on_unit(unit)
