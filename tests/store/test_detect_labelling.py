"""One event's analysis: when a label comes, which one, the counts, the best frame, stationary objects."""

from __future__ import annotations

import numpy as np

from shared.detect.result import Detection
from store.detect.labelling import EventAnalysis
from store.detect.snapshot import draw_box, snapshot_jpeg
from store.detect.tracker import StationaryMemory

FRAME = np.zeros((36, 64, 3), dtype=np.uint8)
STEP = 200_000  # 5 fps


def analysis(memory: StationaryMemory | None = None, **kw: object) -> EventAnalysis:
    options: dict = {"objects": ["person", "car"], "min_score": 0.5, "threshold": 0.7,
                     "stationary": memory if memory is not None else StationaryMemory()}
    options.update(kw)
    return EventAnalysis(1, "cam0", 0, **options)


def walker(i: int, score: float = 0.8, label: str = "person") -> Detection:
    return Detection(label, score, (0.1 + 0.05 * i, 0.2, 0.1, 0.3))


def test_a_label_needs_three_detections_whose_median_reaches_the_threshold() -> None:
    a = analysis()
    assert not a.add(0, FRAME, [walker(0, 0.9)])
    assert not a.add(STEP, FRAME, [walker(1, 0.9)])
    assert a.label is None
    assert a.add(2 * STEP, FRAME, [walker(2, 0.75)])
    assert (a.label, a.label_score) == ("person", 0.9)
    labelling = a.labelling()
    assert labelling.labels == {"person": 1} and labelling.box == walker(0).box


def test_single_frame_hits_and_low_medians_never_label() -> None:
    a = analysis()
    for i in range(10):  # a hit every other frame, at a median below the threshold
        a.add(i * STEP, FRAME, [walker(i, 0.6)] if i % 2 else [])
    assert a.label is None and a.labelling().labels == {}


def test_labels_not_looked_for_and_zones_that_refuse_are_ignored() -> None:
    a = analysis(objects=["car"])
    for i in range(5):
        a.add(i * STEP, FRAME, [walker(i, 0.95)])
    assert a.label is None
    b = analysis(allows=lambda label, box: box[0] > 0.2)  # only the walker's later boxes are in the zone
    for i in range(7):
        b.add(i * STEP, FRAME, [walker(i, 0.95)])
    assert b.label == "person" and b.best is not None and b.best.box[0] > 0.2


def test_counts_are_the_most_seen_at_once() -> None:
    a = analysis()
    for i in range(4):
        two = [walker(i), Detection("person", 0.85, (0.7, 0.5 + 0.01 * i, 0.1, 0.3))]
        a.add(i * STEP, FRAME, two if i < 3 else two[:1])
    assert a.labelling().labels == {"person": 2}


def test_a_stationary_object_seen_before_does_not_label_the_next_event() -> None:
    memory = StationaryMemory()
    parked = Detection("car", 0.9, (0.5, 0.5, 0.2, 0.1))
    first = analysis(memory)
    for i in range(4):
        first.add(i * STEP, FRAME, [parked])
    assert first.label == "car"  # new to the camera: it labels this event
    first.finish()
    second = EventAnalysis(2, "cam0", 10_000_000, objects=["car", "person"], min_score=0.5, threshold=0.7,
                           stationary=memory)
    for i in range(4):
        second.add(10_000_000 + i * STEP, FRAME, [parked])
    assert second.label is None
    for i in range(4, 8):  # a person walks past the parked car: that labels it
        second.add(10_000_000 + i * STEP, FRAME, [parked, walker(i)])
    assert second.label == "person"


def test_frames_outside_the_event_and_repeats_are_not_evidence() -> None:
    a = analysis()
    a.end_us = 3 * STEP
    assert not a.wants(-1) and a.wants(0) and not a.wants(3 * STEP)
    a.add(STEP, FRAME, [walker(0)])
    assert not a.add(STEP, FRAME, [walker(1)])
    assert a.frames == 1


def test_the_snapshot_shows_the_box() -> None:
    rgb = np.full((72, 128, 3), 40, dtype=np.uint8)
    drawn = draw_box(rgb, (0.25, 0.25, 0.5, 0.5))
    assert (drawn[18, 64] == (255, 64, 32)).all()  # the top edge
    assert (drawn[36, 64] == 40).all()  # the inside is untouched
    assert (rgb == 40).all()  # the frame itself is not drawn on
    jpeg, width, height = snapshot_jpeg(np.full((71, 129, 3), 90, dtype=np.uint8), (0.1, 0.1, 0.2, 0.2))
    assert jpeg[:2] == b"\xff\xd8" and (width, height) == (128, 70)
