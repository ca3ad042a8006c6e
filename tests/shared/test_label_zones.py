"""Zones that require labels: the health field on the wire, point-in-polygon, and the store's rule."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.label_zones import LabelZones, bottom_centre, point_in_polygon
from shared.protocol.errors import ProtocolError
from shared.protocol.health import CameraHealth, LabelZone, NodeHealth

unit = st.integers(0, 1000).map(lambda i: i / 1000)  # a zone drawn on a picture: no subnormal coordinates
points = st.tuples(unit, unit)
polygons = st.lists(points, min_size=3, max_size=12)

DRIVEWAY = LabelZone(("person", "car"), ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)))  # bottom-left quarter
GATE = LabelZone(("person",), ((0.5, 0.0), (1.0, 0.0), (1.0, 0.5)))  # a triangle top-right


def health_with(zones: Any) -> NodeHealth:
    return NodeHealth.from_json({"node": "n0", "cameras": {"cam0": {"state": "up", "label_zones": zones}}})


def test_label_zones_round_trip_in_the_health_and_older_nodes_omit_them() -> None:
    camera = CameraHealth(state="up", label_zones=(DRIVEWAY, GATE))
    wire = json.loads(json.dumps(NodeHealth(node="n0", cameras={"cam0": camera}).to_json()))
    assert wire["cameras"]["cam0"]["label_zones"] == [
        {"objects": ["person", "car"], "points": [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]},
        {"objects": ["person"], "points": [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5]]}]
    assert NodeHealth.from_json(wire).cameras["cam0"] == camera
    assert "label_zones" not in CameraHealth(state="up").to_json()  # as an older node sends it
    assert health_with(None).cameras["cam0"].label_zones is None
    assert health_with([]).cameras["cam0"].label_zones == ()


@pytest.mark.parametrize(("zones", "field", "message"), [
    ("person", "cameras.cam0.label_zones", "must be an array"),
    ([{"objects": [], "points": [[0, 0], [1, 0], [1, 1]]}], "label_zones[0].objects", "at least one label"),
    ([{"objects": "person", "points": [[0, 0], [1, 0], [1, 1]]}], "label_zones[0].objects", "list of labels"),
    ([{"objects": ["a,b"], "points": [[0, 0], [1, 0], [1, 1]]}], "label_zones[0].objects", "without a comma"),
    ([{"objects": ["person"], "points": [[0, 0], [1, 0]]}], "label_zones[0].points", "3 to 256"),
    ([{"objects": ["person"], "points": [[0, 0], [1, 0], [1, 2]]}], "label_zones[0].points[2]", "in 0..1"),
    ([{"objects": ["person"], "points": [[0, 0], [1, 0], [True, 1]]}], "label_zones[0].points[2]", "in 0..1"),
    ([{"objects": ["person"], "points": [[0, 0], [1, 0], [1, 1]]}] * 33, "cameras.cam0.label_zones", "at most 32"),
])
def test_a_malformed_label_zone_names_its_field(zones: Any, field: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        health_with(zones)
    assert caught.value.field is not None and caught.value.field.endswith(field)


def test_no_zone_allows_every_label_anywhere() -> None:
    assert LabelZones().allows("dog", (0.9, 0.0, 0.1, 0.1))
    assert LabelZones.from_health(None).allows("person", (0, 0, 1, 1))
    assert LabelZones.from_health(CameraHealth(state="up")).zones == ()  # an older node: nothing required


def test_a_label_counts_only_in_a_zone_that_lists_it() -> None:
    zones = LabelZones.from_health(CameraHealth(label_zones=(DRIVEWAY, GATE)))
    assert zones.labels == {"person", "car"}
    standing_in_driveway = (0.1, 0.4, 0.2, 0.4)  # bottom-centre (0.2, 0.8), its head above the zone
    assert zones.allows("person", standing_in_driveway) and zones.allows("car", standing_in_driveway)
    assert not zones.allows("dog", standing_in_driveway)  # no zone lists it: nowhere on this camera
    at_the_gate = (0.8, 0.0, 0.15, 0.2)  # bottom-centre (0.875, 0.2): inside the triangle
    assert zones.allows("person", at_the_gate) and not zones.allows("car", at_the_gate)
    overlapping_only_from_above = (0.1, 0.0, 0.2, 0.45)  # the box dips near the zone, its feet do not
    assert not zones.allows("person", overlapping_only_from_above)
    assert bottom_centre((0.1, 0.2, 0.4, 0.6)) == pytest.approx((0.3, 0.8))


@given(st.floats(0.0, 0.9), st.floats(0.0, 0.9), st.floats(0.05, 0.1), st.floats(0.05, 0.1), points)
def test_a_rectangle_contains_exactly_the_points_strictly_inside_it(x: float, y: float, w: float, h: float,
                                                                    p: tuple[float, float]) -> None:
    px, py = p
    margin = 1e-9
    assume(min(abs(px - x), abs(px - x - w), abs(py - y), abs(py - y - h)) > margin)  # not on an edge
    rect = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    assert point_in_polygon(px, py, rect) == (x < px < x + w and y < py < y + h)


def distance_to_edges(p: tuple[float, float], polygon: list[tuple[float, float]]) -> float:
    px, py = p
    nearest = math.inf
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        k = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / length2))
        nearest = min(nearest, math.hypot(px - x1 - k * dx, py - y1 - k * dy))
    return nearest


@given(polygons, points, st.integers(0, 11))
def test_the_answer_does_not_depend_on_the_first_vertex_or_the_winding(polygon: list[tuple[float, float]],
                                                                        p: tuple[float, float], shift: int) -> None:
    assume(distance_to_edges(p, polygon) > 1e-6)  # on an edge it may fall either way (documented)
    shift %= len(polygon)
    inside = point_in_polygon(*p, polygon)
    assert point_in_polygon(*p, polygon[shift:] + polygon[:shift]) == inside
    assert point_in_polygon(*p, polygon[::-1]) == inside


@given(polygons, points)
def test_a_point_outside_the_bounding_box_is_never_inside(polygon: list[tuple[float, float]],
                                                          p: tuple[float, float]) -> None:
    xs, ys = [x for x, _ in polygon], [y for _, y in polygon]
    if not (min(xs) <= p[0] <= max(xs) and min(ys) <= p[1] <= max(ys)):
        assert not point_in_polygon(*p, polygon)


@given(st.lists(st.tuples(polygons, st.sampled_from([("person",), ("car",), ("person", "car")])), min_size=1,
                max_size=4), polygons, points)
def test_more_zones_allow_more_and_a_zone_for_other_labels_changes_nothing(
        zones: list[tuple[list[tuple[float, float]], tuple[str, ...]]], extra: list[tuple[float, float]],
        feet: tuple[float, float]) -> None:
    base = tuple(LabelZone(objects, tuple(polygon)) for polygon, objects in zones)
    box = (feet[0] - 0.05, feet[1] - 0.2, 0.1, 0.2)  # bottom-centre exactly at ``feet``
    assert bottom_centre(box) == pytest.approx(feet)
    for label in ("person", "car"):
        allowed = LabelZones(base).allows(label, box)
        assert not allowed or LabelZones((*base, LabelZone((label,), tuple(extra)))).allows(label, box)
        assert LabelZones((*base, LabelZone(("dog",), tuple(extra)))).allows(label, box) == allowed
    assert not LabelZones(base).allows("dog", box)
