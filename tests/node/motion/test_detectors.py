"""Both detectors on real simulated frames and real H.264 encodes, checked against ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from node.motion import LumaDetector, MotionVectorDetector
from node.motion.vectors import open_decoder
from tests.node.motion.simulate import FPS, H, W, clip, run

KINDS = ("luma", "vectors")
QUIET_S = 2.0
LAMP_ZONE = {"mode": "exclude", "rect": [0.70, 0.10, 0.15, 0.25]}  # drawn exactly on the lamp


def path_box(scene: str, seconds: float) -> tuple[float, float, float, float]:
    """Normalised x0, y0, x1, y1 of everywhere the object went."""
    boxes = [b for frame in clip(scene, seconds).boxes for b in frame]
    return (min(b[1] for b in boxes) / W, min(b[2] for b in boxes) / H,
            max(b[3] for b in boxes) / W, max(b[4] for b in boxes) / H)


@pytest.mark.parametrize("kind", KINDS)
def test_an_object_crossing_gives_one_event_covering_it(kind):
    events = run(kind, "crossing.json", 12.0)
    appear, leave = clip("crossing.json", 12.0).visible()
    assert len(events) == 1, events
    (e,) = events
    start, end = e.start_us / 1e6, e.end_us / 1e6
    assert appear <= start <= appear + 0.5
    assert leave - 0.5 <= end <= leave + QUIET_S + 0.5
    assert start <= e.thumb_us / 1e6 <= end  # type: ignore[operator]
    assert e.kind == "motion" and 0 < e.score <= 1 and (e.camera, e.node) == ("cam0", "node0")
    # The event's box covers most of the object's path, and little else.
    assert e.bbox is not None
    x, y, w, h = e.bbox
    px0, py0, px1, py1 = path_box("crossing.json", 12.0)
    overlap = max(0.0, min(x + w, px1) - max(x, px0)) * max(0.0, min(y + h, py1) - max(y, py0))
    assert overlap >= 0.7 * (px1 - px0) * (py1 - py0)
    assert w * h <= 3 * (px1 - px0) * (py1 - py0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_static_noisy_scene_with_changing_light_gives_no_event(kind):
    # The shipped 'quiet' scene: noise sigma 2.5, light swinging +-15 % of full scale every 30 s.
    means = [float(y.mean()) for y in clip("quiet", 45.0).lumas]
    assert max(means) - min(means) > 50  # the light really does change a lot
    assert run(kind, "quiet", 45.0) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_flickering_lamp_triggers_unless_excluded(kind):
    assert len(run(kind, "flicker.json", 10.0)) >= 1
    assert run(kind, "flicker.json", 10.0, (LAMP_ZONE,)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_an_object_is_still_found_beside_an_excluded_lamp(kind):
    events = run(kind, "crossing_flicker.json", 14.0, (LAMP_ZONE,))
    appear, leave = clip("crossing_flicker.json", 14.0).visible()
    assert len(events) == 1, events
    assert appear <= events[0].start_us / 1e6 <= appear + 0.5
    assert events[0].bbox is not None and events[0].bbox[1] > 0.35  # below the lamp


def test_an_include_zone_limits_detection_to_it():
    # Only the top third counts: the crossing happens lower down, so nothing is reported.
    top = {"mode": "include", "rect": [0.0, 0.0, 1.0, 0.33]}
    for kind in KINDS:
        assert run(kind, "crossing.json", 12.0, (top,)) == []


def test_luma_rejects_an_image_of_the_wrong_size():
    with pytest.raises(ValueError, match="320x180"):
        LumaDetector(320, 180).detect(np.zeros((90, 160), np.uint8))


def test_luma_sensitivity_zero_ignores_a_faint_change_that_one_catches():
    faint = clip("crossing.json", 12.0).lumas[0].astype(np.int16)
    changed = faint.copy()
    changed[60:120, 100:160] += 5  # a faint 5-step change over a patch
    results = {}
    for s in (0.0, 1.0):
        d = LumaDetector(W, H, sensitivity=s, fps=FPS)
        for _ in range(5):
            d.detect(faint.astype(np.uint8))
        results[s] = d.detect(changed.astype(np.uint8)).motion
    assert results == {0.0: False, 1.0: True}


def test_vectors_carry_the_last_sample_across_keyframes():
    c = clip("crossing.json", 12.0)
    d = MotionVectorDetector(W, H, fps=FPS)
    previous = None
    keyframes = 0
    for u in c.units:
        sample = d.feed(u.data, u.keyframe, u.capture_us)
        if u.keyframe and previous is not None:
            assert sample == previous
            keyframes += 1
        previous = sample
    assert keyframes >= 10 and d.decode_errors == 0


def test_vectors_wait_for_a_keyframe_and_survive_garbage():
    c = clip("crossing.json", 12.0)
    d = MotionVectorDetector(W, H, fps=FPS)
    first_p = next(u for u in c.units if not u.keyframe)
    assert d.feed(first_p.data, False, first_p.capture_us).motion is False  # no reference yet: skipped
    for u in c.units[:12]:
        d.feed(u.data, u.keyframe, u.capture_us)
    before = d.feed(b"\x00\x00\x00\x01\x41\x9a\x00\x00", False, 0)  # a damaged unit
    assert d.decode_errors == 1 and before is not None


def test_skipping_reconstruction_leaves_the_vectors_bit_identical():
    import av

    c = clip("crossing.json", 12.0)
    full, skip = open_decoder(False), open_decoder(True)
    compared = 0
    for u in c.units:
        a = [f.side_data.get("MOTION_VECTORS") for f in full.decode(av.Packet(u.data))]
        b = [f.side_data.get("MOTION_VECTORS") for f in skip.decode(av.Packet(u.data))]
        assert len(a) == len(b) == 1
        if a[0] is None:
            assert b[0] is None and u.keyframe
            continue
        assert np.array_equal(a[0].to_ndarray(), b[0].to_ndarray())
        compared += 1
    assert compared > 90
