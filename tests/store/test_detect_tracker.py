"""ObjectTracker, Track and StationaryMemory: the confirmation rule, matching, ageing, stationary objects."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.detect.result import Detection
from store.detect.tracker import (
    FORGET_STATIONARY_US,
    STATIONARY_IOU,
    ObjectTracker,
    StationaryMemory,
    Track,
    iou,
)

FRAME_US = 200_000  # 5 fps


def person(score: float, x: float = 0.1, y: float = 0.1, w: float = 0.2, h: float = 0.4) -> Detection:
    return Detection("person", score, (x, y, w, h))


def feed(tracker: ObjectTracker, frames: list[list[Detection]], start_us: int = 0) -> None:
    for i, detections in enumerate(frames):
        tracker.update(start_us + i * FRAME_US, detections)


def test_iou_of_boxes():
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert iou((0, 0, 1, 1), (2, 2, 1, 1)) == 0.0
    assert iou((0, 0, 2, 1), (1, 0, 2, 1)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_three_sure_hits_confirm_on_the_third():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.8, x=0.1 + 0.01 * i)] for i in range(2)])
    assert tracker.confirmed() == [] and not tracker.tracks[0].confirmed
    tracker.update(2 * FRAME_US, [person(0.75, x=0.12)])
    (track,) = tracker.confirmed()
    assert track.confirmed and track.hits == 3 and track.confirmed_us == 2 * FRAME_US
    assert track.label == "person" and track.first_us == 0 and track.last_us == 2 * FRAME_US


def test_single_frame_hit_never_confirms_however_sure():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.99)], [], [], [], [], [], []])
    assert tracker.confirmed() == [] and tracker.tracks == []


def test_median_rule_is_exact():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.9)], [person(0.6)], [person(0.65)]])
    (track,) = tracker.tracks
    assert track.median_score == pytest.approx(0.65) and not track.confirmed
    tracker.update(3 * FRAME_US, [person(0.9)])  # median of 0.6, 0.65, 0.9, 0.9 = 0.775
    assert track.median_score == pytest.approx(0.775) and track.confirmed
    assert track.confirmed_us == 3 * FRAME_US


def test_confirmation_latches_when_later_scores_fall():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.9)], [person(0.9)], [person(0.9)], [person(0.5)], [person(0.5)], [person(0.5)],
                   [person(0.5)]])
    (track,) = tracker.tracks
    assert track.median_score == 0.5 and track.confirmed and tracker.confirmed() == [track]


def test_below_min_score_is_ignored():
    tracker = ObjectTracker(min_score=0.5)
    feed(tracker, [[person(0.49)], [person(0.3)], [person(0.2)]])
    assert tracker.tracks == [] and tracker.confirmed() == []


def test_track_dies_after_max_missed_frames():
    tracker = ObjectTracker(max_missed=5)
    feed(tracker, [[person(0.9)]] + [[]] * 4 + [[person(0.9)]])
    (track,) = tracker.tracks
    assert track.hits == 2 and track.id == 1  # 4 misses: still the same track
    feed(tracker, [[]] * 5 + [[person(0.9)]], start_us=6 * FRAME_US)
    (track,) = tracker.tracks
    assert track.hits == 1 and track.id == 2  # 5 misses: a new track


def test_labels_never_match_each_other():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.9)], [Detection("car", 0.9, (0.1, 0.1, 0.2, 0.4))]])
    assert sorted(t.label for t in tracker.tracks) == ["car", "person"]
    assert [t.hits for t in tracker.tracks] == [1, 1]


def test_greedy_matching_takes_the_best_overlap_first():
    tracker = ObjectTracker()
    tracker.update(0, [person(0.9, x=0.2, w=0.4), person(0.9, x=0.4, w=0.4)])
    left, right = tracker.tracks
    # d1 overlaps left 0.45 and right 0.78; d2 overlaps only left, 0.38. Taking the left track's own best (d1)
    # first would orphan the right one; best overlap first gives each its own.
    d1, d2 = person(0.8, x=0.35, w=0.4), person(0.7, x=0.02, w=0.4)
    assert iou(left.last_box, d1.box) > iou(left.last_box, d2.box) >= 0.3 > iou(right.last_box, d2.box)
    tracker.update(FRAME_US, [d1, d2])
    assert left.last_box == d2.box and right.last_box == d1.box
    assert tracker.tracks == [left, right]


def test_far_box_starts_a_new_track():
    tracker = ObjectTracker(iou=0.3)
    feed(tracker, [[person(0.9, x=0.0)], [person(0.9, x=0.6)]])
    assert [t.hits for t in tracker.tracks] == [1, 1]


def test_best_is_the_highest_score_earliest_of_equals():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.7, x=0.1)], [person(0.9, x=0.11)], [person(0.9, x=0.12)], [person(0.8, x=0.13)]])
    assert tracker.tracks[0].best == (0.9, FRAME_US, (0.11, 0.1, 0.2, 0.4))


def test_stationary_until_the_box_leaves_its_first_place():
    tracker = ObjectTracker()
    feed(tracker, [[person(0.9, x=0.1)], [person(0.9, x=0.11)], [person(0.9, x=0.12)]])
    track = tracker.tracks[0]
    assert track.stationary
    feed(tracker, [[person(0.9, x=0.14)], [person(0.9, x=0.17)], [person(0.9, x=0.2)]], start_us=3 * FRAME_US)
    assert track.hits == 6 and iou(track.boxes[0], track.last_box) < STATIONARY_IOU and not track.stationary


def test_bad_parameters_are_refused():
    for kwargs in ({"min_score": 1.5}, {"threshold": -0.1}, {"min_hits": 0}, {"max_missed": 0}, {"iou": 0}):
        with pytest.raises(ValueError):
            ObjectTracker(**kwargs)


def confirmed_stationary(label: str = "car", box=(0.5, 0.5, 0.2, 0.1), start_us: int = 0) -> Track:
    tracker = ObjectTracker()
    feed(tracker, [[Detection(label, 0.9, box)]] * 3, start_us=start_us)
    (track,) = tracker.confirmed()
    return track


def test_stationary_memory_knows_a_parked_car_again():
    memory = StationaryMemory()
    car = confirmed_stationary()
    assert not memory.known(car)
    assert memory.remember(car) and len(memory) == 1
    later = confirmed_stationary(box=(0.51, 0.5, 0.2, 0.1), start_us=3600 * 1_000_000)
    assert memory.known(later)
    assert memory.remember(later) and len(memory) == 1  # refreshed, not added
    assert not memory.known(confirmed_stationary(label="person", start_us=3600 * 1_000_000))
    assert not memory.known(confirmed_stationary(box=(0.1, 0.1, 0.2, 0.1), start_us=3600 * 1_000_000))


def test_stationary_memory_forgets_after_a_day_unseen():
    memory = StationaryMemory()
    memory.remember(confirmed_stationary())
    day_later = confirmed_stationary(start_us=FORGET_STATIONARY_US + 10 * FRAME_US)
    assert not memory.known(day_later) and len(memory) == 0


def test_stationary_memory_refuses_moving_or_unconfirmed_tracks():
    memory = StationaryMemory()
    tracker = ObjectTracker()
    feed(tracker, [[person(0.9, x=0.1 + 0.04 * i)] for i in range(6)])
    (walker,) = tracker.confirmed()
    assert not walker.stationary and not memory.remember(walker) and not memory.known(walker)
    tracker = ObjectTracker()
    feed(tracker, [[person(0.9)]] * 2)
    assert not memory.remember(tracker.tracks[0])


def test_stationary_memory_is_bounded():
    memory = StationaryMemory(limit=3)
    for i in range(5):
        memory.remember(confirmed_stationary(box=(0.15 * i, 0.0, 0.1, 0.1), start_us=i * 10 * FRAME_US))
    assert len(memory) == 3
    assert not memory.known(confirmed_stationary(box=(0.0, 0.0, 0.1, 0.1), start_us=60 * FRAME_US))
    assert memory.known(confirmed_stationary(box=(0.6, 0.0, 0.1, 0.1), start_us=60 * FRAME_US))


# --- properties over random frame sequences -------------------------------------------------------------------

grid = st.integers(0, 8).map(lambda v: v / 10)
detections = st.builds(
    Detection,
    label=st.sampled_from(["person", "car"]),
    score=st.floats(0.0, 1.0),
    box=st.tuples(grid, grid, st.sampled_from([0.1, 0.2, 0.3]), st.sampled_from([0.1, 0.2, 0.3])),
)
frames_strategy = st.lists(st.lists(detections, max_size=5), max_size=30)


def run_and_collect(frames: list[list[Detection]], **kwargs) -> tuple[ObjectTracker, dict[int, Track]]:
    tracker = ObjectTracker(**kwargs)
    seen: dict[int, Track] = {}
    for i, frame in enumerate(frames):
        tracker.update(i * FRAME_US, frame)
        usable = [d for d in frame if d.score >= tracker.min_score]
        hit_now = [t for t in tracker.tracks if t.last_us == i * FRAME_US]
        assert sum(1 for t in hit_now if t.times[-1] == i * FRAME_US) == len(usable)  # each detection used once
        assert all(t.missed < tracker.max_missed for t in tracker.tracks)
        for track in tracker.tracks:
            assert seen.setdefault(track.id, track) is track  # an id names one track only
    return tracker, seen


def confirms_by_rule(scores: list[float], min_hits: int, threshold: float) -> bool:
    return any(statistics.median(scores[:k]) >= threshold for k in range(min_hits, len(scores) + 1))


@settings(max_examples=200, deadline=None)
@given(frames_strategy, st.integers(1, 5), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_tracker_properties(frames, min_hits, threshold, min_score):
    tracker, seen = run_and_collect(frames, min_hits=min_hits, threshold=threshold, min_score=min_score)
    confirmed = tracker.confirmed()
    assert len({t.id for t in confirmed}) == len(confirmed)
    for track in seen.values():
        assert track.confirmed == confirms_by_rule(track.scores, min_hits, threshold)  # the median rule, exactly
        assert track.confirmed == (track in confirmed)
        assert not track.confirmed or track.hits >= min_hits
        assert all(s >= min_score for s in track.scores)
        assert track.times == sorted(set(track.times))  # at most one hit a frame
        assert track.stationary == all(iou(b, track.boxes[0]) >= STATIONARY_IOU for b in track.boxes)
        assert track.median_score == pytest.approx(statistics.median(track.scores))
        assert track.best[0] == max(track.scores)


@settings(max_examples=100, deadline=None)
@given(frames_strategy)
def test_default_tracker_never_confirms_with_fewer_than_three_hits(frames):
    tracker, seen = run_and_collect(frames)
    assert all(t.hits >= 3 for t in tracker.confirmed())
    assert not any(t.confirmed for t in seen.values() if t.hits == 1)
