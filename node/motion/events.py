"""Per-frame motion samples into events, with hysteresis.

An event starts after motion in ``start_frames`` consecutive frames and its
``start_us`` is the capture time of the *first* of them, so requiring several
frames rejects flicker without making the event look late. It ends once
``quiet_s`` pass without motion; ``end_us`` is the last moving frame plus one
frame interval (the same convention as segments: just past the last frame).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, replace

from node.motion.grid import MotionSample
from shared.ids import check_id
from shared.protocol.ingest import EventRecord

DEFAULT_START_FRAMES = 3
DEFAULT_QUIET_S = 2.0
DEFAULT_FRAME_US = 66_667  # until two frames have been seen: 15 fps


@dataclass
class _Open:
    start_us: int
    last_motion_us: int
    peak: float
    thumb_us: int
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 (corners, for cheap unions)

    def add(self, capture_us: int, sample: MotionSample) -> None:
        self.last_motion_us = capture_us
        if sample.score > self.peak:
            self.peak, self.thumb_us = sample.score, capture_us
        if sample.bbox is not None:
            x, y, w, h = sample.bbox
            corners = (x, y, x + w, y + h)
            b = self.box
            self.box = corners if b is None else (min(b[0], corners[0]), min(b[1], corners[1]),
                                                 max(b[2], corners[2]), max(b[3], corners[3]))


class EventTracker:
    """Hysteresis over one camera's samples. Pure and synchronous: call it from the detector's thread."""

    def __init__(self, camera: str, node: str, start_frames: int = DEFAULT_START_FRAMES,
                 quiet_s: float = DEFAULT_QUIET_S) -> None:
        if start_frames < 1:
            raise ValueError(f"start_frames must be at least 1, got {start_frames}")
        if quiet_s < 0:
            raise ValueError(f"quiet_s must not be negative, got {quiet_s}")
        self.camera = check_id(camera, "camera id")
        self.node = check_id(node, "node id")
        self.start_frames = start_frames
        self.quiet_us = int(quiet_s * 1_000_000)
        self._deltas: deque[int] = deque(maxlen=15)  # recent frame intervals: their median ignores gaps
        self._last_us: int | None = None
        self._streak: list[tuple[int, MotionSample]] = []  # consecutive moving frames, not yet an event
        self._open: _Open | None = None

    def update(self, capture_us: int, sample: MotionSample) -> list[EventRecord]:
        """Feed one frame's sample (frames in capture order); returns the events this frame finished."""
        if self._last_us is not None and capture_us > self._last_us:
            self._deltas.append(capture_us - self._last_us)
        self._last_us = capture_us
        finished: list[EventRecord] = []
        if self._open is not None:
            if sample.motion:
                self._open.add(capture_us, sample)
                return finished
            if capture_us - self._open.last_motion_us < self.quiet_us:
                return finished
            finished.append(self._record(self._open))
            self._open = None
        if not sample.motion:
            self._streak.clear()
            return finished
        self._streak.append((capture_us, sample))
        if len(self._streak) >= self.start_frames:
            first_us, first = self._streak[0]
            event = _Open(first_us, first_us, 0.0, first_us, None)
            for t, s in self._streak:
                event.add(t, s)
            self._open = event
            self._streak.clear()
        return finished

    def ongoing(self) -> EventRecord | None:
        """The event in progress, as it would be reported if it ended now (for pre-roll decisions)."""
        return None if self._open is None else self._record(self._open)

    def flush(self, now_us: int | None = None) -> list[EventRecord]:
        """Close the event in progress (at shutdown, or when detection is switched off)."""
        if self._open is None:
            return []
        event, self._open = self._open, None
        self._streak.clear()
        record = self._record(event)
        if now_us is not None and now_us < record.end_us:
            record = replace(record, end_us=max(record.start_us, now_us))
        return [record]

    @property
    def frame_us(self) -> int:
        return int(statistics.median_low(self._deltas)) if self._deltas else DEFAULT_FRAME_US

    def _record(self, e: _Open) -> EventRecord:
        bbox = None
        if e.box is not None:
            x0, y0, x1, y1 = (min(1.0, max(0.0, v)) for v in e.box)
            bbox = (x0, y0, x1 - x0, y1 - y0)
        return EventRecord(node=self.node, camera=self.camera, start_us=e.start_us,
                           end_us=e.last_motion_us + self.frame_us, kind="motion",
                           score=round(min(1.0, max(0.0, e.peak)), 4), bbox=bbox, thumb_us=e.thumb_us)

