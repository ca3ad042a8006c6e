"""One event's object analysis: detections in, the event's label, counts and best frame out. Pure, no I/O.

A detection counts only for a label the camera looks for (``objects``), inside
a zone that allows it (shared/label_zones.py), at ``min_score`` or more. The
tracker (store/detect/tracker.py) follows objects across analysed frames; a
track gives its label to the event once it is confirmed (median score >=
``threshold`` over >= 3 detections), unless it is a stationary object the camera
has seen before (a parked car does not label every event beside it). The event's
``label`` is the confirmed label with the best median; ``labels`` says, per
label, the most confirmed tracks of it seen in one frame; the snapshot is the
frame where the label's track scored best.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from shared.detect.result import Detection
from store.detect.tracker import ObjectTracker, StationaryMemory, Track
from store.index.event_labels import EventLabelling

Box = tuple[float, float, float, float]
ZoneCheck = Callable[[str, Box], bool]


@dataclass
class BestFrame:
    capture_us: int
    rgb: np.ndarray
    label: str
    score: float
    box: Box


class EventAnalysis:
    def __init__(self, event_id: int, camera: str, start_us: int, *, objects: Collection[str], min_score: float,
                 threshold: float, stationary: StationaryMemory, allows: ZoneCheck = lambda label, box: True) -> None:
        self.event_id, self.camera, self.start_us = event_id, camera, start_us
        self.end_us: int | None = None  # known once the event closed
        self.from_recording = False  # analysed from its stored segments, not live
        self.missed_at_start = 0  # its camera's lost pictures when it began: more at its end, and it was not whole
        self.touched = 0.0  # monotonic time of its last picture (or its start): an event long untouched is stale
        self.objects = frozenset(objects)
        self.min_score = min_score
        self.allows = allows
        self.stationary = stationary
        self.tracker = ObjectTracker(min_score=min_score, threshold=threshold)
        self.frames = 0
        self.last_us = -1
        self.at_once: dict[str, int] = {}
        self.label: str | None = None
        self.label_score: float | None = None
        self.best: BestFrame | None = None
        self._track_best: dict[int, BestFrame] = {}  # track id -> its best frame
        self._leader: int | None = None  # the id of the track that gives the label
        self.snapshot_written_us: int | None = None  # capture time of the best frame last written as snapshot
        self.snapshot_at = 0.0  # monotonic time of that write
        self.announced = False  # the first label was counted and told (objects-mode nodes keep footage by it)

    def wants(self, capture_us: int) -> bool:
        return capture_us >= self.start_us and (self.end_us is None or capture_us < self.end_us)

    def add(self, capture_us: int, rgb: np.ndarray, detections: list[Detection]) -> bool:
        """One analysed frame; True when the event's labelling changed (label, score or counts)."""
        if capture_us <= self.last_us:
            return False  # frames arrive in order; a repeat (a reconnect's replay) is not new evidence
        self.last_us = capture_us
        self.frames += 1
        kept = [d for d in detections
                if d.label in self.objects and d.score >= self.min_score and self.allows(d.label, d.box)]
        self.tracker.update(capture_us, kept)
        self._note_best_frames(capture_us, rgb)
        before = (self.label, self.label_score, dict(self.at_once))
        seen_now: dict[str, int] = {}
        for track in self._counting():
            if track.last_us == capture_us:
                seen_now[track.label] = seen_now.get(track.label, 0) + 1
        for label, n in seen_now.items():
            self.at_once[label] = max(self.at_once.get(label, 0), n)
        leader = max(self._counting(), key=lambda t: t.median_score, default=None)
        if leader is not None:
            self.label, self.label_score = leader.label, round(leader.median_score, 4)
            self._leader = leader.id
            self.best = self._track_best.get(leader.id, self.best)
        return (self.label, self.label_score, self.at_once) != before

    def _note_best_frames(self, capture_us: int, rgb: np.ndarray) -> None:
        """Each live track's best-scoring frame so far, so a snapshot may show a hit from before it confirmed.
        Only live tracks and the label's track keep one: a long, busy event holds a bounded number of frames."""
        keep: dict[int, BestFrame] = {}
        for track in self.tracker.tracks:
            best = self._track_best.get(track.id)
            if track.last_us == capture_us and (best is None or track.scores[-1] > best.score):
                best = BestFrame(capture_us, rgb, track.label, track.scores[-1], track.boxes[-1])
            if best is not None:
                keep[track.id] = best
        if self._leader is not None and self._leader not in keep and self._leader in self._track_best:
            keep[self._leader] = self._track_best[self._leader]
        self._track_best = keep

    def _counting(self) -> list[Track]:
        """Confirmed tracks that may label the event: not a stationary object seen before."""
        return [t for t in self.tracker.confirmed()
                if not (t.stationary and self.stationary.known(t))]

    def labelling(self) -> EventLabelling:
        box = self.best.box if self.best is not None else None
        return EventLabelling(self.label, self.label_score, box, dict(self.at_once))

    def forget_frames(self) -> None:
        """Once its snapshot is written: the pictures it held go (the label, counts and box stay)."""
        if self.best is not None:
            self.best = BestFrame(self.best.capture_us, np.zeros((0, 0, 3), np.uint8), self.best.label,
                                  self.best.score, self.best.box)
        self._track_best = {}

    def finish(self) -> None:
        """The event is over: remember its stationary objects so they label no later event."""
        for track in self.tracker.confirmed():
            self.stationary.remember(track)  # only stationary ones are kept
