"""The console's logic without a screen: fleet status, alerts, timelines, keyframe choice and decoding, sizes."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import av
import pytest

from console.alerts import AlertTracker
from console.fleet_model import FleetSnapshot, gpu_summary, per_interval
from console.formatting import seconds, spark
from console.live_stream import KeyframeDecoder, KeyframeThrottle
from console.screens.search import parse_cameras
from console.screens.settings import FormError, read_form
from console.widgets.picture import fit_cells
from console.widgets.timeline_bar import timeline_cells
from shared.protocol.fleet import FleetReport
from shared.protocol.live import LiveFrame
from tests.console.canned import FLEET, NOW_US, SECOND


def snapshot(data: dict[str, Any]) -> FleetSnapshot:
    return FleetSnapshot.from_api(FleetReport.from_json(data))


def fleet_at(now_us: int, **changes: Any) -> dict[str, Any]:
    """The canned fleet at another time, with node0's health changed."""
    data = copy.deepcopy(FLEET)
    data["now_us"] = now_us
    node0 = data["nodes"][0]
    for key, value in changes.items():
        if key == "state":
            node0["state"] = value
        elif key in ("cam0", "cam1"):
            node0["health"]["cameras"][key].update(value)
        else:
            node0["health"][key] = value
    return data


def test_status_says_why_a_row_is_not_up() -> None:
    snap = snapshot(FLEET)
    node0, node1 = snap.nodes
    assert node0.status == "degraded" and "cam1 degraded" in node0.reason and "4 segments" in node0.reason
    assert node0.upload_lag_s == 42
    assert [c.status for c in node0.cameras] == ["up", "degraded"]
    assert "dropped" in node0.cameras[1].reason
    assert node1.status == "down" and snap.cameras["cam2"].reason == "node node1 is down"
    assert snap.node_url_of("cam0") == "http://127.0.0.1:9"
    assert gpu_summary(node0.gpu) == "n/a" and gpu_summary(node1.gpu) == "20% 51°"


def test_a_camera_known_only_from_footage_is_down() -> None:
    data = copy.deepcopy(FLEET)
    data["cameras"]["old9"] = {"node": None, "state": "unknown", "settings": {}}
    snap = snapshot(data)
    assert snap.cameras["old9"].status == "down" and snap.node_url_of("old9") is None


def test_a_slow_camera_is_degraded() -> None:
    data = fleet_at(NOW_US, cam0={"fps": 9.0})
    data["nodes"][0]["history"] = []
    assert snapshot(data).cameras["cam0"].reason == "9.0 fps of 15 configured"


def test_alerts_fire_once_per_change() -> None:
    tracker = AlertTracker()
    first = tracker.update(snapshot(FLEET))
    assert [a.subject for a in first] == ["node0", "node1"]  # spool backlog, node1 down; no drops on first sight
    assert tracker.update(snapshot(fleet_at(NOW_US + 2 * SECOND))) == []

    later = fleet_at(NOW_US + 4 * SECOND, cam1={"frames_dropped": 15}, spool={"segments": 8, "bytes": 900_000_000,
                                                                            "limit_bytes": 1_000_000_000,
                                                                            "oldest_start_us": NOW_US - 60 * SECOND})
    texts = [a.text for a in tracker.update(snapshot(later))]
    assert texts == ["node0 spool growing: 8 segments waiting to upload, oldest 1m04s old",
                     "node0 spool at 90% of its limit: the oldest footage there will be lost if uploads do not "
                     "catch up", "cam1 dropped 3 frames (15 since its node started)"]
    # More drops within the cool-down are held back, then reported together.
    assert tracker.update(snapshot(fleet_at(NOW_US + 6 * SECOND, cam1={"frames_dropped": 17}))) == []
    held = tracker.update(snapshot(fleet_at(NOW_US + 40 * SECOND, cam1={"frames_dropped": 18})))
    assert [a.text for a in held] == ["cam1 dropped 3 frames (18 since its node started)"]

    down = tracker.update(snapshot(fleet_at(NOW_US + 42 * SECOND, state="down")))
    assert [(a.level, a.text) for a in down] == [("error", "node0 is down: missed its heartbeats")]
    up = tracker.update(snapshot(fleet_at(NOW_US + 44 * SECOND)))
    assert [a.text for a in up] == ["node0 is back up"]


def test_a_stalled_camera_is_down_saying_why_and_alerts_once() -> None:
    why = "camera cam0: Picamera2 camera 0 delivered no frame in 1.0 s (a loose ribbon cable or a sensor dropout?)"
    stalled = snapshot(fleet_at(NOW_US, cam0={"state": "stalled", "error": why, "stalls": 1}))
    said = why.removeprefix("camera cam0: ")  # the camera named once, not "camera stalled: camera cam0: ..."
    assert stalled.cameras["cam0"].status == "down" and stalled.cameras["cam0"].reason == f"camera stalled: {said}"
    tracker = AlertTracker()
    tracker.update(snapshot(FLEET))
    alerts = tracker.update(stalled)
    assert [(a.level, a.text) for a in alerts] == [("error", f"cam0: camera stalled: {said}; the node reopens it")]
    assert tracker.update(snapshot(fleet_at(NOW_US + 2 * SECOND, cam0={"state": "stalled", "error": why}))) == []
    back = tracker.update(snapshot(fleet_at(NOW_US + 4 * SECOND)))
    assert [(a.level, a.text) for a in back] == [("info", "cam0 gives frames again")]


def test_per_interval_ignores_counter_resets() -> None:
    assert per_interval([0, 2, 2, None, 5, 1, 3]) == [2, 0, 3, 0, 2]


def test_timeline_cells() -> None:
    lo, hi = 0, 100
    cells = timeline_cells(lo, hi, [(0, 50), (55, 100)], [70], 10)
    assert cells == "█████▄█◆██"
    assert timeline_cells(lo, hi, [], [], 4) == "····"
    assert timeline_cells(lo, hi, [], [], 0) == ""


def test_formatting() -> None:
    assert [seconds(s) for s in (None, 5, 65, 3725, 90000)] == ["-", "5s", "1m05s", "1h02m", "1d01h"]
    assert spark([]) == "" and spark([5, 5, 5]) == "███" and spark([0, 10], floor=None) == "▁█"


def test_throttle_admits_keyframes_at_most_twice_a_second() -> None:
    now = [0.0]
    throttle = KeyframeThrottle(max_fps=2.0, clock=lambda: now[0])
    key, delta = LiveFrame(1, True, b""), LiveFrame(2, False, b"")
    admitted = []
    for step in range(20):
        now[0] = step * 0.25  # a keyframe every 0.25 s
        admitted.append(throttle.admit(key))
    assert not throttle.admit(delta)
    assert admitted == [True, False] * 10  # two a second


def keyframe(width: int, height: int) -> bytes:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 5)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    frame.pts = 0
    packets = list(encoder.encode(frame)) + list(encoder.encode(None))
    return bytes(packets[0])


def test_a_keyframe_decodes_alone_and_wide_pictures_shrink() -> None:
    image = KeyframeDecoder(max_width=640).decode(keyframe(160, 120))
    assert image.size == (160, 120)
    wide = KeyframeDecoder(max_width=320).decode(keyframe(1280, 720))
    assert wide.size == (320, 180)


def test_fit_cells_keeps_the_shape() -> None:
    assert fit_cells(160, 120, 46, 23, (10, 20)) == (46, 17)
    assert fit_cells(1280, 720, 100, 10, (10, 20)) == (35, 10)
    assert fit_cells(0, 0, 10, 5) == (10, 5)


def test_form_and_camera_parsing() -> None:
    def form(mode: object, sensitivity: str, retention: str, objects: str = "person") -> dict[str, Any]:
        return read_form({"recording_mode": mode, "motion_sensitivity": sensitivity, "retention_days": retention,
                          "objects": objects, "min_score": "0.5", "threshold": "0.7", "notify": "motion",
                          "notify_labels": "", "notify_zones": "yard", "notify_cooldown_s": "30"})

    assert form("motion", "0.8", "") == {"recording_mode": "motion", "motion_sensitivity": 0.8,
                                         "retention_days": None, "objects": ["person"], "min_score": 0.5,
                                         "threshold": 0.7, "notify": "motion", "notify_labels": [],
                                         "notify_zones": ["yard"], "notify_cooldown_s": 30}
    assert form("objects", "0.5", "", "person, dog")["objects"] == ["person", "dog"]
    with pytest.raises(FormError, match="objects: a label cannot be empty"):
        form("objects", "0.5", "", "person,")
    assert form("continuous", "1", "30")["retention_days"] == 30
    with pytest.raises(FormError, match="sensitivity"):
        form("motion", "high", "")
    with pytest.raises(FormError, match="motion_sensitivity must be between 0 and 1"):
        form("motion", "1.5", "")
    with pytest.raises(FormError, match="retention"):
        form("motion", "0.5", "a month")
    with pytest.raises(FormError, match="retention_days must be between 1 and 3650"):
        form("motion", "0.5", "0")
    assert parse_cameras(" cam0, cam1  cam2,") == ["cam0", "cam1", "cam2"]
