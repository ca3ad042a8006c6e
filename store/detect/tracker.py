"""Tracks objects across analysed frames by box overlap; a track confirms a label only when it is seen often and
surely enough. Pure: no I/O, no clock (times come with the frames).

Single-frame hits on foliage, shadows and panning cameras are the classic false positives of a detector; a label
is given only by a track with at least ``min_hits`` detections whose median score reaches ``threshold`` (Frigate's
``min_score`` 0.5 per detection and ``threshold`` 0.7 per object). Stationary tracks (a parked car) are remembered
per camera (``StationaryMemory``) so that they do not label every later event.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.detect.result import Detection

Box = tuple[float, float, float, float]  # x, y, w, h as fractions of the frame

STATIONARY_IOU = 0.6  # a box that keeps at least this IoU with its first box has not moved
FORGET_STATIONARY_US = 24 * 3600 * 1_000_000
MAX_REMEMBERED = 256  # per camera; the least recently seen goes first


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when the union is empty."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    aw, ah, bw, bh = max(aw, 0.0), max(ah, 0.0), max(bw, 0.0), max(bh, 0.0)
    iw = min(ax0 + aw, bx0 + bw) - max(ax0, bx0)
    ih = min(ay0 + ah, by0 + bh) - max(ay0, by0)
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass(eq=False)
class Track:
    """One object followed across frames. ``confirmed`` latches: once a prefix of the hits met the rule the track
    stays confirmed (its label was given), even if later scores pull the median down."""

    id: int
    label: str
    min_hits: int
    threshold: float
    first_us: int
    last_us: int
    scores: list[float] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    missed: int = 0  # consecutive analysed frames without a match
    confirmed_us: int | None = None  # the capture time of the hit that confirmed it
    _sorted_scores: list[float] = field(default_factory=list, repr=False)
    _stationary: bool = True
    _best_index: int = 0

    def add(self, capture_us: int, detection: Detection) -> None:
        """A matched detection: record it and latch confirmation when the rule is met."""
        index = len(self.scores)
        self.scores.append(detection.score)
        self.boxes.append(detection.box)
        self.times.append(capture_us)
        bisect.insort(self._sorted_scores, detection.score)
        self.last_us = capture_us
        self.missed = 0
        if index and detection.score > self.scores[self._best_index]:
            self._best_index = index
        if index and iou(detection.box, self.boxes[0]) < STATIONARY_IOU:
            self._stationary = False
        if self.confirmed_us is None and self.hits >= self.min_hits and self.median_score >= self.threshold:
            self.confirmed_us = capture_us

    @property
    def hits(self) -> int:
        return len(self.scores)

    @property
    def median_score(self) -> float:
        ordered, n = self._sorted_scores, len(self._sorted_scores)
        if n == 0:
            return 0.0
        mid = n // 2
        return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    @property
    def confirmed(self) -> bool:
        return self.confirmed_us is not None

    @property
    def best(self) -> tuple[float, int, Box]:
        """The best-scored hit (the earliest of equals): score, capture time, box."""
        i = self._best_index
        return self.scores[i], self.times[i], self.boxes[i]

    @property
    def last_box(self) -> Box:
        return self.boxes[-1]

    @property
    def stationary(self) -> bool:
        """Every box so far has IoU >= 0.6 with the first: the object has not left where it was first seen."""
        return self._stationary


class ObjectTracker:
    """Greedy IoU matching of each frame's detections to the live tracks, per label, best overlap first."""

    def __init__(self, min_score: float = 0.5, threshold: float = 0.7, min_hits: int = 3, iou: float = 0.3,
                 max_missed: int = 5) -> None:
        if not 0.0 <= min_score <= 1.0 or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"min_score and threshold must lie in 0..1, got {min_score} and {threshold}")
        if min_hits < 1 or max_missed < 1:
            raise ValueError(f"min_hits and max_missed must be 1 or more, got {min_hits} and {max_missed}")
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must lie in (0, 1], got {iou}")
        self.min_score, self.threshold, self.min_hits = min_score, threshold, min_hits
        self.iou, self.max_missed = iou, max_missed
        self.tracks: list[Track] = []  # alive
        self._confirmed: list[Track] = []
        self._next_id = 1

    def update(self, capture_us: int, detections: Sequence[Detection]) -> None:
        """One analysed frame: match, extend, start new tracks, age and drop unmatched ones."""
        usable = [d for d in detections if d.score >= self.min_score]
        pairs = []  # (iou, track index, detection index) over the same label and at least the iou floor
        for ti, track in enumerate(self.tracks):
            for di, detection in enumerate(usable):
                if detection.label == track.label:
                    overlap = iou(track.last_box, detection.box)
                    if overlap >= self.iou:
                        pairs.append((overlap, ti, di))
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))  # best overlap first; ties: older track, earlier detection
        used_tracks: set[int] = set()
        used_detections: set[int] = set()
        for _, ti, di in pairs:
            if ti in used_tracks or di in used_detections:
                continue
            used_tracks.add(ti)
            used_detections.add(di)
            self._add(self.tracks[ti], capture_us, usable[di])
        survivors = []
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
            if track.missed < self.max_missed:
                survivors.append(track)
        for di, detection in enumerate(usable):
            if di not in used_detections:
                track = Track(self._next_id, detection.label, self.min_hits, self.threshold, capture_us, capture_us)
                self._next_id += 1
                self._add(track, capture_us, detection)
                survivors.append(track)
        self.tracks = survivors

    def _add(self, track: Track, capture_us: int, detection: Detection) -> None:
        was = track.confirmed
        track.add(capture_us, detection)
        if track.confirmed and not was:
            self._confirmed.append(track)

    def confirmed(self) -> list[Track]:
        """Every track confirmed in this tracker's life, alive or not, in the order they confirmed."""
        return list(self._confirmed)


@dataclass
class _Remembered:
    label: str
    box: Box
    last_seen_us: int


class StationaryMemory:
    """One camera's confirmed stationary objects (label, first box), so that a parked car does not open or label
    every later event. Entries unseen for ``forget_after_us`` (24 h) are forgotten; at most ``limit`` kept."""

    def __init__(self, forget_after_us: int = FORGET_STATIONARY_US, limit: int = MAX_REMEMBERED) -> None:
        self.forget_after_us = forget_after_us
        self.limit = limit
        self._entries: list[_Remembered] = []

    def __len__(self) -> int:
        return len(self._entries)

    def _match(self, track: Track) -> _Remembered | None:
        best: _Remembered | None = None
        best_iou = STATIONARY_IOU
        for entry in self._entries:
            if entry.label == track.label:
                overlap = iou(entry.box, track.boxes[0])
                if overlap >= best_iou:
                    best, best_iou = entry, overlap
        return best

    def forget(self, now_us: int) -> None:
        self._entries = [e for e in self._entries if now_us - e.last_seen_us <= self.forget_after_us]

    def known(self, track: Track) -> bool:
        """True when ``track`` is stationary and sits where a remembered object of its label sat (IoU >= 0.6)."""
        if not track.boxes or not track.stationary:
            return False
        self.forget(track.last_us)
        return self._match(track) is not None

    def remember(self, track: Track) -> bool:
        """Remember (or refresh the last-seen time of) a confirmed stationary track; False if it is neither."""
        if not track.boxes or not track.confirmed or not track.stationary:
            return False
        self.forget(track.last_us)
        entry = self._match(track)
        if entry is not None:
            entry.last_seen_us = max(entry.last_seen_us, track.last_us)
            return True
        self._entries.append(_Remembered(track.label, track.boxes[0], track.last_us))
        if len(self._entries) > self.limit:
            self._entries.sort(key=lambda e: e.last_seen_us)
            del self._entries[: len(self._entries) - self.limit]
        return True
