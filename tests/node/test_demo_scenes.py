"""The demo's six simulated cameras show six different places (issue 18, "The demo looks like six cameras"):
each camera's source as the demo gives it to its node, opened by the node's source registry, its first frame
through the node's H.264 encoder and decoded again; and the same camera shows the same picture every run."""

from __future__ import annotations

import itertools
import json

import av
import numpy as np
import pytest

from node.capture.encode import H264Encoder
from node.sources import SourceError, open_source
from node.sources.base import plane_view
from node.sources.scenario import builtin_scenarios, load_scenario, scenario_from_json
from node.sources.synthetic import SyntheticSource
from shared.config import CameraConfig
from shared.fields import FieldError
from sht.demo import CAMERAS_PER_NODE, DEMO_SCENES, NODES, demo_camera_sources

W, H, FPS = 320, 180, 10  # the size tests/system/test_demo.py runs the demo at
MIN_PAIR_DIFFERENCE = 12.0  # mean absolute difference in 0..255, over Y, U and V of the decoded first frames


def camera(cam: str, source: str) -> CameraConfig:
    return CameraConfig(id=cam, source=source, width=W, height=H, fps=FPS)


def first_frame_decoded(cam: str, source: str) -> np.ndarray:
    """Frame 0 of the camera's source, encoded by the node's encoder and decoded: what a viewer first sees."""
    src = open_source(camera(cam, source))
    encoder = H264Encoder(W, H, FPS)
    units = [*encoder.encode(src.read(0), 0), *encoder.flush()]
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for u in units for f in decoder.decode(av.Packet(u.data))]  # a unit is one access unit
    frames += decoder.decode(None)
    assert frames, f"{cam}: no frame decoded"
    planes = frames[0].to_ndarray(format="yuv420p")  # Y then the U and V planes stacked below it
    return planes.astype(np.int16)


def test_the_demo_gives_each_camera_its_own_shipped_scene():
    sources = demo_camera_sources()
    assert sorted(sources) == [f"cam{i}" for i in range(NODES * CAMERAS_PER_NODE)]
    assert len(set(DEMO_SCENES)) == len(DEMO_SCENES) == len(sources)
    assert set(DEMO_SCENES) <= set(builtin_scenarios())
    for cam, source in sources.items():
        assert source.startswith(f"synthetic:{DEMO_SCENES[int(cam[3:])]}?")


def test_the_six_first_frames_differ_pairwise():
    frames = {cam: first_frame_decoded(cam, source) for cam, source in demo_camera_sources().items()}
    differences = {(a, b): float(np.abs(frames[a] - frames[b]).mean()) for a, b in itertools.combinations(frames, 2)}
    alike = {pair: round(d, 1) for pair, d in differences.items() if d < MIN_PAIR_DIFFERENCE}
    assert alike == {}, f"cameras too alike (mean absolute difference < {MIN_PAIR_DIFFERENCE}): {alike}"


def test_a_camera_shows_the_same_picture_every_run():
    cam, source = "cam3", demo_camera_sources()["cam3"]
    first, again = open_source(camera(cam, source)), open_source(camera(cam, source))
    for i in (0, 1, 37):
        a, b = first.read(i), again.read(i)
        for p in range(3):
            assert np.array_equal(plane_view(a, p), plane_view(b, p)), f"frame {i} plane {p}"
    assert np.array_equal(first_frame_decoded(cam, source), first_frame_decoded(cam, source))


def test_seed_and_phase_change_the_picture_and_the_moment():
    base = open_source(camera("cam0", "synthetic:street"))
    reseeded = open_source(camera("cam0", "synthetic:street?seed=9"))
    assert np.abs(plane_view(base.read(0), 0).astype(int) - plane_view(reseeded.read(0), 0)).mean() > 3
    later = open_source(camera("cam0", "synthetic:street?phase=5"))
    assert isinstance(base, SyntheticSource) and isinstance(later, SyntheticSource)
    assert later.ground_truth(0) == base.ground_truth(50) != []  # street: a walker from 3 s; 5 s = frame 50
    assert open_source(camera("cam0", "synthetic")).ground_truth(50) == base.ground_truth(50)  # default: street


@pytest.mark.parametrize("source, says", [
    ("synthetic:street?speed=2", "unknown option 'speed' (known: phase, seed)"),
    ("synthetic:street?seed=-1", "seed must be a whole number >= 0"),
    ("synthetic:street?seed=two", "seed must be a whole number >= 0"),
    ("synthetic:street?phase=nan", "phase a number of seconds >= 0"),
])
def test_bad_options_say_what_is_wrong_in_one_line(source, says):
    with pytest.raises(SourceError) as err:
        open_source(camera("cam0", source))
    assert says in str(err.value) and "\n" not in str(err.value) and "cam0" in str(err.value)


@pytest.mark.parametrize("scene, field", [
    ({"fixtures": [{"rect": [0, 0, 1], "luma": 10}]}, "scene.fixtures[0].rect"),
    ({"fixtures": [{"rect": [0, 0, 1, 1]}]}, "scene.fixtures[0].luma"),
    ({"fixtures": [{"rect": [0, 0, 1, 1], "luma": 10, "uv": [300, 1]}]}, "scene.fixtures[0].uv"),
    ({"tint": [120]}, "scene.tint"),
    ({"kerb": 2}, "scene.kerb"),
    ({"sky": 100}, "scene.sky"),
])
def test_malformed_scenes_name_the_field(scene, field):
    with pytest.raises(FieldError) as err:
        scenario_from_json({"scene": scene}, "s.json")
    assert err.value.field == field


def test_a_fixture_is_drawn_where_the_scene_says(tmp_path):
    path = tmp_path / "door.json"
    path.write_text(json.dumps({"noise": 0, "illumination": {"amplitude": 0}, "scene": {
        "fixtures": [{"rect": [0.5, 0.5, 0.25, 0.25], "luma": 40, "uv": [200, 60]}]}}))
    frame = SyntheticSource(W, H, FPS, load_scenario(str(path))).read(0)
    door = plane_view(frame, 0)[90:135, 160:240].astype(int)
    assert abs(door.mean() - 40) < 8  # its luma, with the fine texture kept
    assert (plane_view(frame, 1)[45:67, 80:120] == 200).all() and (plane_view(frame, 2)[45:67, 80:120] == 60).all()
    assert plane_view(frame, 0)[:80].mean() > 90  # the rest is still the street's sky


def test_each_demo_camera_has_separate_events_for_review():
    """The node's motion detector (luma, defaults) over a minute of each camera: several events, each a mover's
    passage, not one that never ends (a flickering light would make one; the scenes have none)."""
    from node.motion import DetectorConfig, EventTracker, make_detector

    for cam, source in demo_camera_sources().items():
        src = open_source(camera(cam, source))
        config = DetectorConfig(kind="luma")
        detector = make_detector(config, W, H, FPS)
        tracker = EventTracker(cam, "node0", config.start_frames, config.quiet_s)
        events = []
        for i in range(60 * FPS):
            events += tracker.update(i * 1_000_000 // FPS, detector.detect_frame(plane_view(src.read(i), 0)))
        events += tracker.flush(60_000_000)
        spans = [(e.start_us / 1e6, (e.end_us or 60_000_000) / 1e6) for e in events]
        assert len(spans) >= 3 and max(end - start for start, end in spans) < 20, f"{cam} ({source}): {spans}"
