"""EventTracker hysteresis on hand-made samples: exact start, end, peak, box and thumbnail time."""

from __future__ import annotations

import pytest

from node.motion import NO_MOTION, EventTracker, MotionSample

FRAME = 100_000  # 10 fps


def moving(score: float = 0.5, bbox=(0.1, 0.2, 0.1, 0.1)) -> MotionSample:
    return MotionSample(score, bbox, 0.01)


def feed(tracker: EventTracker, pattern: str, scores: dict[int, float] | None = None, t0: int = 0):
    """'#' = a moving frame, '.' = a still one; returns every finished event."""
    out = []
    for i, ch in enumerate(pattern):
        sample = moving((scores or {}).get(i, 0.5)) if ch == "#" else NO_MOTION
        out += tracker.update(t0 + i * FRAME, sample)
    return out


def test_starts_after_n_consecutive_frames_at_the_first_of_them():
    t = EventTracker("cam0", "node0", start_frames=3, quiet_s=2.0)
    assert feed(t, ".." + "##" + "." + "###") == []
    e = t.ongoing()
    assert e is not None and e.start_us == 5 * FRAME  # the first of the three, not the third
    assert e.end_us == 8 * FRAME


def test_short_bursts_never_become_events():
    t = EventTracker("cam0", "node0", start_frames=3, quiet_s=2.0)
    assert feed(t, "##.##.#..##." * 5) == [] and t.ongoing() is None and t.flush() == []


def test_ends_after_quiet_s_with_end_just_past_the_last_moving_frame():
    t = EventTracker("cam0", "node0", start_frames=3, quiet_s=2.0)
    events = feed(t, "#####" + "." * 19)
    assert events == [] and t.ongoing() is not None  # 1.9 s of quiet: still open
    (e,) = t.update(24 * FRAME, NO_MOTION)  # 2.0 s after the last moving frame (4)
    assert (e.start_us, e.end_us, e.kind) == (0, 5 * FRAME, "motion")
    assert t.ongoing() is None


def test_motion_within_quiet_s_extends_the_same_event():
    t = EventTracker("cam0", "node0", start_frames=3, quiet_s=2.0)
    events = feed(t, "###" + "." * 15 + "#" + "." * 25)
    assert len(events) == 1 and events[0].end_us == 19 * FRAME


def test_peak_score_thumbnail_time_and_union_box():
    t = EventTracker("cam0", "node0", start_frames=2, quiet_s=1.0)
    t.update(0, MotionSample(0.2, (0.1, 0.1, 0.2, 0.2), 0.01))
    t.update(FRAME, MotionSample(0.9, (0.5, 0.6, 0.1, 0.1), 0.05))
    t.update(2 * FRAME, MotionSample(0.4, (0.4, 0.0, 0.1, 0.1), 0.02))
    (e,) = t.flush(10 * FRAME)
    assert e.score == 0.9 and e.thumb_us == FRAME
    assert e.bbox == pytest.approx((0.1, 0.0, 0.5, 0.7))
    e.validate()


def test_flush_closes_the_open_event_and_nothing_else():
    t = EventTracker("cam0", "node0")
    feed(t, "####")
    (e,) = t.flush(4 * FRAME)
    assert (e.start_us, e.end_us) == (0, 4 * FRAME)
    assert t.flush() == [] and t.ongoing() is None


def test_frame_interval_follows_the_stream():
    t = EventTracker("cam0", "node0", start_frames=1, quiet_s=0.5)
    for i in range(3):
        t.update(i * 40_000, moving())  # 25 fps
    (e,) = t.update(3 * 40_000 + 600_000, NO_MOTION)
    assert e.end_us == 2 * 40_000 + 40_000


@pytest.mark.parametrize("kwargs", [{"start_frames": 0}, {"quiet_s": -1}, {"camera": "bad id!"}])
def test_bad_arguments_are_refused(kwargs):
    args = {"camera": "cam0", "node": "node0", **kwargs}
    with pytest.raises(ValueError):
        EventTracker(**args)
