"""Typed messages across process boundaries: health, fleet and query results keep their JSON exactly."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.protocol.control import Heartbeat, parse_control
from shared.protocol.errors import ProtocolError
from shared.protocol.fleet import FleetReport
from shared.protocol.health import NodeHealth
from shared.protocol.results import (
    EventPage,
    ExportResult,
    LockResult,
    Revoked,
    SegmentPage,
    Thumbnail,
    Timeline,
)

T0 = 1_764_165_000_000_000

# What a node's /health holds, every group present: a packet source's stream fields and the clock included.
CAMERA: dict[str, Any] = {
    "state": "up", "error": None, "source": "rtsp://cam/stream", "width": 1280, "height": 720,
    "configured_fps": 15, "fps": 14.97, "bitrate_bps": 1450000, "frames_encoded": 9000, "frames_dropped": 0,
    "encoder": "passthrough", "codec": "h264", "encode_seconds": 0.0, "subscribers": 2, "sub_subscribers": 0,
    "last_capture_us": T0, "settings": {"recording_mode": "continuous", "motion_sensitivity": 0.5},
    "motion": {"detector": "luma", "sensitivity": 0.5, "frames": 900, "dropped": 0, "events": 1, "active": False,
               "cpu_ms_per_frame": 0.41, "error": None},
    "substream": "640x360", "substream_frames": {"from_source": 0, "scaled": 900},
    "mode": "passthrough", "reconnects": 1, "source_error": None, "thread_cpu_s": 1.25, "keyframes_completed": 0,
    "clock": {"offset_us": 0, "steps_forward": 0, "steps_back": 1},
    "recording": {"segments_spooled": 80, "segments_failed": 0, "frames_skipped": 0, "journal_errors": 0,
                  "held": 0, "discarded_quiet": 0, "trimmed_bytes": 0, "kept_without_verdict": 0},
}
HEALTH: dict[str, Any] = {
    "node": "node0", "uptime_s": 812.4, "cpu_percent": 23.5, "process_cpu_percent": 11.0, "memory_percent": 41.2,
    "process_rss_bytes": 123456789, "temperature_c": 54.2,
    "soc": {"model": "Raspberry Pi 5 Model B Rev 1.0", "temperature_c": 54.2, "temperature_source": "vcgencmd",
            "throttled": {"raw": "0x50000", "now": [], "since_boot": ["throttled", "under-voltage"]},
            "gpu_mem_mb": 76, "clocks_hz": {"arm": 2400000000, "core": None},
            "gpus": "not available (pynvml is not installed)",
            "sources": {"vcgencmd": True, "thermal_zone": True, "nvml": False}},
    "cameras": {"cam0": CAMERA,
                "cam1": {**{k: v for k, v in CAMERA.items()
                            if k not in ("mode", "reconnects", "source_error", "thread_cpu_s",
                                         "keyframes_completed")},
                         "source": "synthetic", "substream": None, "substream_frames": None, "motion": None}},
    "spool": {"segments": 1, "events": 0, "bytes": 1843210, "limit_bytes": 1000000000, "oldest_start_us": T0,
              "oldest_age_s": 3.2, "lost_segments": 0, "lost_frames": 0, "lost_bytes": 0, "lost_by_camera": {}},
    "store": {"url": "ws://nas2:8100", "link": "connected", "last_error": None, "uploaded": 80, "refused": 0,
              "control": "connected", "stores": "ws://nas1:8100,ws://nas2:8100", "control_url": "ws://nas2:8100",
              "failovers": 1, "resent": 1},
}


def _roundtrip(cls: Any, data: dict[str, Any]) -> None:
    typed = cls.from_json(data)
    assert typed.to_json() == data  # same keys, same values
    assert json.dumps(typed.to_json()) == json.dumps(data)  # and the same text: key order, 15 stays 15
    assert cls.from_json(json.loads(json.dumps(typed.to_json()))) == typed


def test_a_full_node_health_keeps_its_json() -> None:
    _roundtrip(NodeHealth, HEALTH)
    typed = NodeHealth.from_json(HEALTH)
    assert typed.cameras["cam0"].stream is not None and typed.cameras["cam1"].stream is None
    assert typed.cameras["cam0"].clock is not None and typed.cameras["cam0"].clock.steps_back == 1
    assert typed.process.cpu_percent == 23.5 and typed.spool is not None and typed.spool.segments == 1


@pytest.mark.parametrize("soc", [{"state": "reading…"}, {"error": "OSError: boom"},
                                 {**HEALTH["soc"], "gpus": [{"index": 0, "name": "L4", "temperature_c": 40,
                                                             "utilization_percent": 3, "encoder_percent": 0,
                                                             "memory_used_mb": 300}], "throttled": None}])
def test_every_shape_of_the_soc_reading_keeps_its_json(soc: dict[str, Any]) -> None:
    _roundtrip(NodeHealth, {**HEALTH, "soc": soc})


def test_the_heartbeat_carries_typed_health() -> None:
    beat = parse_control(Heartbeat(NodeHealth.from_json(HEALTH)).serialize())
    assert isinstance(beat, Heartbeat) and beat.health.to_json() == HEALTH


def test_an_older_node_that_leaves_fields_out_still_reads() -> None:
    typed = NodeHealth.from_json({"node": "node0", "cameras": {"cam0": {"fps": 15}}})
    assert typed.cameras["cam0"].fps == 15 and typed.cameras["cam0"].state is None and typed.spool is None


@pytest.mark.parametrize("path, value, field", [
    (("cameras", "cam0", "fps"), "fast", "cameras.cam0.fps"),
    (("cameras", "cam0", "recording", "held"), 1.5, "cameras.cam0.recording.held"),
    (("spool", "lost_by_camera"), {"cam0": "x"}, "spool.lost_by_camera.cam0"),
    (("cpu_percent",), True, "cpu_percent"),
    (("cameras",), [], "cameras"),
])
def test_a_bad_field_is_named(path: tuple[str, ...], value: Any, field: str) -> None:
    data = copy.deepcopy(HEALTH)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ProtocolError) as err:
        NodeHealth.from_json(data)
    assert err.value.code == "bad-field" and err.value.field == field and field in err.value.message


SEGMENT = {"id": 7, "camera": "cam0", "node": "node0", "start_us": T0, "end_us": T0 + 10_000_000, "frames": 150,
           "bytes": 1843210, "sha256": "0" * 64}
# An event from a store before object detection (v2): its answer lacks open, label, ... snapshot.
EVENT_V2 = {"id": 9, "camera": "cam0", "node": "node0", "start_us": T0, "end_us": T0 + 5_000_000, "kind": "motion",
            "score": 0.91, "bbox": [0.1, 0.2, 0.3, 0.4], "thumb_us": None, "locked": False, "detail": ""}
EVENT = {**EVENT_V2, "open": False, "label": "person", "label_score": 0.88, "label_box": [0.2, 0.3, 0.1, 0.4],
         "labels": {"person": 2, "traffic light": 1}, "snapshot": True}
TIMELINE = {"camera": "cam0", "from_us": T0, "to_us": T0 + 7_200_000_000, "bucket": "hour",
            "intervals": [[T0, T0 + 60_000_000]], "gaps": [[T0 + 60_000_000, T0 + 7_200_000_000]],
            "recorded_us": 60_000_000,
            "buckets": [{"start_us": T0, "segments": 6, "events": 1, "recorded_us": 60_000_000},
                        {"start_us": T0 + 3_600_000_000, "segments": 0, "events": 0, "recorded_us": 0}]}
FLEET = {"nodes": [{"node": "node0", "state": "up", "url": "http://10.0.0.5:8000", "cameras": ["cam0", "cam1"],
                    "last_seen_us": T0, "state_changed_us": T0 - 1, "health": HEALTH,
                    "history": [{"at_us": T0, "cpu_percent": 23.5, "temperature_c": None, "spool_segments": 1,
                                 "cameras": {"cam0": {"fps": 15.0, "bitrate_bps": 1450000, "frames_dropped": 0}}}],
                    "store": "nas1:8100"},
                   {"node": "node1", "state": "unknown", "url": None, "cameras": ["cam2"], "last_seen_us": None,
                    "state_changed_us": None, "health": None, "history": [], "store": None}],
         "cameras": {"cam0": {"node": "node0", "state": "up", "settings": {"recording_mode": "motion"}},
                     "old9": {"node": None, "state": "unknown", "settings": {}}},
         "now_us": T0 + 1,
         "detector": {"mode": "local", "state": "running", "device": "cpu", "provider": "CPUExecutionProvider",
                      "model": "person-ssdlite.onnx", "workers": 0, "inference_ms_p50": 8.9, "inference_ms_p99": 10.2,
                      "queue": 0, "queue_limit": 20, "frames": 120, "local_frames": 120,
                      "worker_frames": 0, "dropped": 1, "errors": 0, "restarts": 0,
                      "labelled": 3, "last_error": None,
                      "cameras": {"cam0": {"active": True, "frames": 120, "dropped": 1, "labelled": 3,
                                           "stream": "sub"}}}}


@pytest.mark.parametrize("cls, data", [
    (SegmentPage, {"items": [SEGMENT], "next": [T0, 7]}),
    (SegmentPage, {"items": [], "next": None}),
    (EventPage, {"items": [EVENT, {**EVENT, "id": 10, "bbox": None, "thumb_us": T0, "locked": True,
                                   "kind": "loss", "score": 0.0, "detail": "spool full", "label": None,
                                   "label_score": None, "label_box": None, "labels": None, "snapshot": False}],
                 "next": None}),
    (EventPage, {"items": [{**EVENT, "open": True, "label": None, "label_score": None, "label_box": None,
                            "labels": {}, "snapshot": False}], "next": None}),
    (Timeline, TIMELINE),
    (Thumbnail, {"content_type": "image/jpeg", "bytes": 1234, "frame_us": T0, "width": 320, "height": 240}),
    (ExportResult, {"camera": "cam0", "start_us": T0, "end_us": T0 + 1, "frames": 1, "segments": 1, "bytes": 9,
                    "content_type": "video/mp4"}),
    (LockResult, {"event_id": 3, "locked": True}),
    (Revoked, {"token_ids": ["a1", "b2"]}),
    (FleetReport, FLEET),
])
def test_results_keep_their_json(cls: Any, data: dict[str, Any]) -> None:
    _roundtrip(cls, data)


def test_an_event_from_a_store_before_labels_reads_with_the_defaults() -> None:
    (event,) = EventPage.from_json({"items": [EVENT_V2], "next": None}).items
    assert (event.open, event.label, event.label_score, event.label_box, event.labels, event.snapshot) == \
        (False, None, None, None, None, False)


@pytest.mark.parametrize("field, value", [
    ("label", ""), ("label", "x" * 65), ("label", "a\nb"), ("label", 3), ("label_score", 1.5), ("label_box", [1, 2]),
    ("labels", {"person": 0}), ("labels", {"": 1}), ("labels", {"person": True}), ("labels", []),
    ("open", "yes"), ("snapshot", 1),
])
def test_a_bad_label_field_is_named(field: str, value: Any) -> None:
    with pytest.raises(ProtocolError) as err:
        EventPage.from_json({"items": [{**EVENT, field: value}], "next": None})
    assert err.value.code == "bad-field" and err.value.field == f"items[0].{field}"


def test_a_bad_result_field_is_named() -> None:
    with pytest.raises(ProtocolError) as err:
        SegmentPage.from_json({"items": [{**SEGMENT, "frames": "many"}], "next": None})
    assert err.value.field == "items[0].frames"
    with pytest.raises(ProtocolError) as err:
        Timeline.from_json({**TIMELINE, "intervals": [[5, 1]]})
    assert err.value.field == "intervals"
    with pytest.raises(ProtocolError) as err:
        FleetReport.from_json({**FLEET, "now_us": None})
    assert err.value.field == "now_us"


# --- properties -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
READERS = [NodeHealth, FleetReport, SegmentPage, EventPage, Timeline, Thumbnail, ExportResult, LockResult, Revoked]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(READERS), json_values)
def test_any_json_is_read_or_refused_with_a_protocol_error(cls: Any, data: Any) -> None:
    try:
        typed = cls.from_json(data)
    except ProtocolError as exc:
        assert exc.code == "bad-field"
        return
    assert cls.from_json(typed.to_json()) == typed


def _mutations(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The base message with one top-level field replaced by any JSON value (or dropped)."""
    return st.builds(lambda key, value, drop: {k: v for k, v in base.items() if not (drop and k == key)}
                     | ({} if drop else {key: value}),
                     st.sampled_from(sorted(base)), json_values, st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.tuples(st.just(NodeHealth), _mutations(HEALTH)),
    st.tuples(st.just(NodeHealth), _mutations(CAMERA).map(lambda cam: {**HEALTH, "cameras": {"cam0": cam}})),
    st.tuples(st.just(FleetReport), _mutations(FLEET["nodes"][0]).map(lambda n: {**FLEET, "nodes": [n]})),
    st.tuples(st.just(EventPage), _mutations(EVENT).map(lambda e: {"items": [e], "next": None})),
    st.tuples(st.just(SegmentPage), _mutations(SEGMENT).map(lambda s: {"items": [s], "next": None})),
    st.tuples(st.just(Timeline), _mutations(TIMELINE)),
))
def test_a_message_with_one_field_changed_reads_the_same_way_or_names_that_field(case: Any) -> None:
    cls, data = case
    try:
        typed = cls.from_json(data)
    except ProtocolError as exc:
        assert exc.code == "bad-field" and exc.field is not None
        return
    assert cls.from_json(typed.to_json()) == typed
