"""Zones rasterised to the cell grid, and the motion config parsed with errors that name the field."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.motion import DetectorConfig, LumaDetector, MotionVectorDetector, Zone, make_detector, zone_mask
from node.motion.grid import CellGeometry
from node.motion.zones import label_zones, named_zones
from shared.fields import FieldError
from shared.label_zones import point_in_polygon
from shared.protocol.health import CameraHealth, LabelZone, NamedZone, NodeHealth

GRID = CellGeometry(width=100, height=100, cell=10, rows=10, cols=10)


def test_no_zones_means_everywhere():
    assert zone_mask((), GRID).all()


def test_exclude_rect_removes_every_cell_it_touches():
    mask = zone_mask((Zone.rect(0.25, 0.25, 0.2, 0.2),), GRID)  # pixels 25..45: cells 2..4
    expected = np.ones((10, 10), bool)
    expected[2:5, 2:5] = False
    assert (mask == expected).all()


def test_include_rect_keeps_cells_at_least_half_inside():
    mask = zone_mask((Zone.rect(0.25, 0.0, 0.5, 1.0, include=True),), GRID)  # x 25..75
    assert mask[:, 3:7].all() and not mask[:, :2].any() and not mask[:, 8:].any()
    # Cells 2 and 7 are half in (25..30 of 20..30; 70..75 of 70..80): at the boundary of the rule.
    assert mask.sum() in range(40, 61)


def test_polygon_triangle_and_exclusion_inside_inclusion():
    triangle = Zone.polygon([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], include=True)
    hole = Zone.rect(0.0, 0.0, 0.1, 0.1)
    mask = zone_mask((triangle, hole), GRID)
    assert not mask[0, 0] and mask[0, 5] and mask[5, 0] and not mask[9, 9] and not mask[6, 6]


def test_zones_reach_the_edge_cells_of_a_grid_that_overhangs_the_picture():
    # 180 rows of 16-pixel macroblocks: 12 rows, the last one mostly outside the picture.
    g = CellGeometry(width=320, height=180, cell=16, rows=12, cols=20)
    mask = zone_mask((Zone.rect(0.0, 0.9, 1.0, 0.1),), g)
    assert not mask[11].any() and mask[:10].all()


def test_config_defaults_and_factory():
    c = DetectorConfig.from_json({}, "cam.json")
    assert (c.kind, c.sensitivity, c.start_frames, c.quiet_s, c.zones) == ("luma", 0.5, 3, 2.0, ())
    luma = make_detector(c, 1280, 720, 15)
    assert isinstance(luma, LumaDetector) and (luma.width, luma.height) == (320, 180) and luma.needs == "luma"
    vec = make_detector(DetectorConfig(kind="vectors"), 1280, 720, 15)
    assert isinstance(vec, MotionVectorDetector) and vec.needs == "h264"
    assert vec.geometry.rows == 45 and vec.geometry.cols == 80


def test_config_full():
    c = DetectorConfig.from_json({"detector": "vectors", "sensitivity": 0.8, "min_area": 0.01, "start_frames": 5,
                                  "quiet_s": 4, "zones": [{"mode": "include", "polygon": [[0, 0], [1, 0], [1, 1]]},
                                                          {"mode": "exclude", "rect": [0, 0, 0.5, 0.5]}]}, "x")
    assert (c.kind, c.sensitivity, c.min_area, c.start_frames, c.quiet_s) == ("vectors", 0.8, 0.01, 5, 4.0)
    assert [z.include for z in c.zones] == [True, False]


@pytest.mark.parametrize("doc, field", [
    ({"detector": "magic"}, "cameras[0].motion.detector"),
    ({"sensitivity": 2}, "cameras[0].motion.sensitivity"),
    ({"min_area": -0.1}, "cameras[0].motion.min_area"),
    ({"start_frames": 0}, "cameras[0].motion.start_frames"),
    ({"quiet_s": "long"}, "cameras[0].motion.quiet_s"),
    ({"zone": []}, "cameras[0].motion.zone"),
    ({"zones": {}}, "cameras[0].motion.zones"),
    ({"zones": [{"rect": [0, 0, 1, 1]}]}, "cameras[0].motion.zones[0].mode"),
    ({"zones": [{"mode": "exclude"}]}, "cameras[0].motion.zones[0].rect"),
    ({"zones": [{"mode": "exclude", "rect": [0, 0, 0, 1]}]}, "cameras[0].motion.zones[0].rect"),
    ({"zones": [{"mode": "exclude", "rect": [0, 0, 2, 1]}]}, "cameras[0].motion.zones[0].rect"),
    ({"zones": [{"mode": "include", "polygon": [[0, 0], [1, 1]]}]}, "cameras[0].motion.zones[0].polygon"),
    ({"zones": [{"mode": "include", "polygon": [[0, 0], [1, 1], [1, 2]]}]}, "cameras[0].motion.zones[0].polygon"),
    ({"zones": [{"mode": "include", "polygon": [[0, 0], [1, 1], [1, 0]], "rect": [0, 0, 1, 1]}]},
     "cameras[0].motion.zones[0].rect"),
])
def test_config_errors_name_the_field(doc, field):
    with pytest.raises(FieldError) as err:
        DetectorConfig.from_json(doc, "node.json", "cameras[0].motion")
    assert err.value.field == field and err.value.source == "node.json"


def test_an_include_zone_may_require_labels_and_the_health_reports_it():
    c = DetectorConfig.from_json({"zones": [
        {"mode": "include", "rect": [0, 0.5, 0.5, 0.6], "objects": ["person", "car"]},
        {"mode": "include", "polygon": [[0.5, 0], [1, 0], [1, 0.5]]},
        {"mode": "exclude", "rect": [0.9, 0.9, 0.1, 0.1]}]}, "x")
    assert c.zones[0].objects == ("person", "car") and c.zones[0].include and c.zones[1].objects == ()
    # The rect reaches past the bottom edge (allowed): the health cuts it there.
    assert label_zones(c.zones) == (LabelZone(("person", "car"), ((0, 0.5), (0.5, 0.5), (0.5, 1.0), (0, 1.0))),)
    assert zone_mask(c.zones, GRID)[9, 0]  # it still counts for motion like any include zone


@pytest.mark.parametrize(("zone", "field", "message"), [
    ({"mode": "exclude", "rect": [0, 0, 0.5, 0.5], "objects": ["person"]}, "motion.zones[0].objects",
     "only an include zone"),
    ({"mode": "include", "rect": [0, 0, 0.5, 0.5], "objects": []}, "motion.zones[0].objects", "at least one label"),
    ({"mode": "include", "rect": [0, 0, 0.5, 0.5], "objects": "person"}, "motion.zones[0].objects",
     "list of labels"),
    ({"mode": "include", "rect": [0, 0, 0.5, 0.5], "objects": ["person", "person"]}, "motion.zones[0].objects",
     "more than once"),
    ({"mode": "include", "polygon": [[0, 0], [1, 0], [1, 1]] * 86, "objects": ["person"]},
     "motion.zones[0].polygon", "at most 256 points"),
])
def test_a_bad_label_zone_names_its_field(zone, field, message):
    with pytest.raises(FieldError, match=message) as caught:
        DetectorConfig.from_json({"zones": [zone]}, "cam.json")
    assert caught.value.field == field


def test_at_most_32_zones_require_labels():
    zone = {"mode": "include", "rect": [0, 0, 0.5, 0.5], "objects": ["person"]}
    assert len(label_zones(DetectorConfig.from_json({"zones": [zone] * 32}, "x").zones)) == 32
    with pytest.raises(FieldError, match="at most 32 zones"):
        DetectorConfig.from_json({"zones": [zone] * 33}, "x")


def test_an_include_zone_may_have_a_name_the_health_reports_with_its_shape():
    c = DetectorConfig.from_json({"zones": [
        {"mode": "include", "rect": [0.5, 0.5, 0.6, 0.5], "name": "door"},
        {"mode": "include", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]], "name": "front gate", "objects": ["car"]},
        {"mode": "include", "rect": [0, 0.5, 0.5, 0.5]}]}, "x")
    assert [z.name for z in c.zones] == ["door", "front gate", None]
    door, gate = named_zones(c.zones)
    assert door == NamedZone("door", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0))), "cut at the edge"
    assert gate.name == "front gate" and label_zones(c.zones)[0].objects == ("car",)
    wire = NodeHealth.from_json({"node": "n0", "cameras": {"cam0": CameraHealth(state="up", zones=(door,)).to_json()}})
    assert wire.cameras["cam0"].zones == (door,)
    assert "zones" not in CameraHealth(state="up").to_json()  # as a node older than names sends it


@pytest.mark.parametrize(("zones", "message"), [
    ([{"mode": "exclude", "rect": [0, 0, 0.5, 0.5], "name": "lamp"}], "only an include zone has a name"),
    ([{"mode": "include", "rect": [0, 0, 0.5, 0.5], "name": ""}], "a zone's name cannot be empty"),
    ([{"mode": "include", "rect": [0, 0, 0.5, 0.5], "name": "a,b"}], "without a comma"),
    ([{"mode": "include", "rect": [0, 0, 0.5, 0.5], "name": "door"}] * 2, "another zone of this camera is named"),
])
def test_a_bad_zone_name_names_its_field(zones, message):
    with pytest.raises(FieldError, match=message) as caught:
        DetectorConfig.from_json({"zones": zones}, "cam.json")
    assert caught.value.field == f"motion.zones[{len(zones) - 1}].name"


unit = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(st.lists(st.tuples(unit, unit), min_size=3, max_size=10), st.lists(st.tuples(unit, unit), max_size=20))
def test_the_store_and_the_node_agree_on_what_a_zone_contains(polygon, probes):
    """The node's vectorised test (motion mask) and the store's (label zones) are one rule."""
    zone = Zone.polygon(polygon, include=True)
    px = np.array([x for x, _ in probes], dtype=float)
    py = np.array([y for _, y in probes], dtype=float)
    assert list(zone.contains(px, py)) == [point_in_polygon(x, y, zone.points) for x, y in probes]
