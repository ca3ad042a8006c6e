import json

import numpy as np
import pytest

from node.sources.base import plane_view
from node.sources.scenario import builtin_scenarios, load_scenario, scenario_from_json
from node.sources.synthetic import SyntheticSource
from shared.config import ConfigError
from shared.fields import FieldError


def test_builtin_scenarios_load():
    assert {"street", "quiet", "busy"} <= set(builtin_scenarios())
    for name in builtin_scenarios():
        load_scenario(name)


@pytest.mark.parametrize("doc, field", [
    ({"objects": [{"start": 0, "end": 1, "size": [10], "from": [0, 0], "to": [1, 1]}]}, "objects[0].size"),
    ({"objects": [{"start": 5, "end": 1, "size": [10, 10], "from": [0, 0], "to": [1, 1]}]}, "objects[0].end"),
    ({"objects": [{"start": 0, "end": 1, "size": [10, 10], "from": [0, 2], "to": [1, 1]}]}, "objects[0].from"),
    ({"illumination": {"amplitude": 3}}, "illumination.amplitude"),
    ({"distractors": [{"rect": [0, 0, 1], "amplitude": 3, "period_s": 1}]}, "distractors[0].rect"),
    ({"noise": "loud"}, "noise"),
    ({"objcts": []}, "objcts"),
])
def test_malformed_scenarios_name_the_field(doc, field):
    with pytest.raises(FieldError) as err:
        scenario_from_json(doc, "s.json")
    assert err.value.field == field


def test_missing_file_lists_builtins(tmp_path):
    with pytest.raises(ConfigError, match="built-in scenarios"):
        load_scenario(str(tmp_path / "nope.json"))


def test_object_moves_in_a_straight_line_and_is_absent_outside_its_time():
    sc = scenario_from_json({"objects": [{"start": 1, "end": 3, "size": [10, 20],
                                          "from": [0.0, 0.5], "to": [1.0, 0.5], "luma": 250}]}, "s")
    assert sc.boxes_at(0.5, 100, 100) == []
    assert sc.boxes_at(2.0, 100, 100) == [(0, 45, 40, 55, 60)]
    assert sc.boxes_at(3.5, 100, 100) == []


def test_synthetic_frames_show_the_ground_truth(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"noise": 1, "objects": [
        {"start": 0, "end": 10, "size": [40, 40], "from": [0.25, 0.5], "to": [0.75, 0.5], "luma": 255}]}))
    src = SyntheticSource(320, 240, 10, load_scenario(str(path)))
    video = src.read(50)
    assert (video.width, video.height, video.format.name) == (320, 240, "yuv420p")
    frame = plane_view(video, 0).copy()
    assert frame.shape == (240, 320) and frame.dtype == np.uint8
    ((_, x0, y0, x1, y1),) = src.ground_truth(50)
    assert (frame[y0, x0:x1] == 255).all()
    # Elsewhere the scene is background: different frames differ only by noise and drift.
    later = plane_view(src.read(51), 0).astype(int)
    background = np.ones((240, 320), bool)
    background[:, 100:240] = False
    assert np.abs(later[background] - frame[background]).mean() < 6


def test_frames_vary_by_noise():
    src = SyntheticSource(64, 48, 10, load_scenario("quiet"))
    a = plane_view(src.read(0), 0).copy()
    b = plane_view(src.read(1), 0).copy()
    assert (a != b).any()


def test_illumination_drifts_without_wrapping_around():
    src = SyntheticSource(64, 48, 10, load_scenario("quiet"))  # amplitude 0.15, period 30 s
    bright = plane_view(src.read(75), 0).astype(int)  # t = 7.5 s: peak
    dark = plane_view(src.read(225), 0).astype(int)  # t = 22.5 s: trough
    assert 60 < (bright - dark).mean() < 90  # about 2 x 0.15 x 255
    assert bright.min() >= 0 and (bright >= dark - 10).all()  # no pixel wrapped past 255
