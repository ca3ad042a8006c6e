"""The retained state the MQTT bridge keeps: motion, counts, snapshots, settings echo, node state (no broker)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

from shared.protocol.health import CameraHealth, NodeHealth, ProcessReading, SpoolHealth
from store.notify.changes import EventChange, EventObject
from store.notify.mqtt.state import NODE_STATE_EVERY_S, Message, RetainedState, Snapshot, setting_payload
from store.notify.mqtt.topics import Topics

S = 1_000_000


def event(event_id: int, start_s: float, end_s: float | None = None, labels: dict[str, int] | None = None,
          label: str | None = None, snapshot: bool = False, camera: str = "cam2") -> EventObject:
    return EventObject(event_id, camera, "node0", int(start_s * S), None if end_s is None else int(end_s * S),
                       "motion", label, 0.8, None, (), f"/events/{event_id}/snapshot.jpg" if snapshot else None,
                       labels=labels)


def payloads(messages: list) -> dict[str, str | int]:
    return {m.topic: (m.payload if isinstance(m, Message) else m.event_id) for m in messages}


def test_motion_and_counts_follow_the_camera_s_newest_event() -> None:
    state = RetainedState(Topics("sht"))
    first = state.camera_settings("cam2", {"objects": ["person"], "recording_mode": "motion",
                                           "motion_sensitivity": 0.5, "notify": "objects"})
    assert payloads(first) == {"sht/cam2/recording_mode/state": "motion", "sht/cam2/motion_sensitivity/state": "0.5",
                               "sht/cam2/notify/state": "ON", "sht/cam2/motion": "OFF", "sht/cam2/person": "0"}
    opened = event(1, 10)
    assert payloads(state.event_changed(EventChange("new", None, opened))) == {"sht/cam2/motion": "ON"}
    two = replace(opened, labels={"person": 2, "car": 1}, label="person", snapshot="/events/1/snapshot.jpg")
    assert payloads(state.event_changed(EventChange("update", opened, two))) == {
        "sht/cam2/person": "2", "sht/cam2/car": "1", "sht/cam2/person/snapshot": 1}
    assert state.event_changed(EventChange("update", two, replace(two, end_us=None))) == [], "nothing new"
    # A newer event starts (the store ended the first one for it): the camera is its newest event's.
    newer = event(2, 20)
    state.event_changed(EventChange("new", None, newer))
    ended_first = replace(two, end_us=15 * S)
    assert state.event_changed(EventChange("end", two, ended_first)) == [], "the old event's end moves nothing"
    assert payloads(state.event_changed(EventChange("end", newer, replace(newer, end_us=25 * S)))) == {
        "sht/cam2/motion": "OFF"}
    assert {m.topic: m for m in state.current()}["sht/cam2/person"] == Message("sht/cam2/person", "0")
    # A label arriving after the end still gives its snapshot, not motion.
    late = replace(ended_first, label="car", labels={"car": 1})
    assert payloads(state.event_changed(EventChange("update", ended_first, late))) == {"sht/cam2/car/snapshot": 1}


def test_a_loss_event_moves_nothing_and_a_forgotten_camera_is_cleared() -> None:
    state = RetainedState(Topics("home/sht"))
    state.camera_settings("cam2", {"objects": ["person"]})
    loss = replace(event(3, 5), kind="loss")
    assert state.event_changed(EventChange("new", None, loss)) == []
    assert state.latest_snapshot("cam2", "person", 9) == [Snapshot("home/sht/cam2/person/snapshot", 9)]
    assert sorted(state.forget_camera("cam2")) == ["home/sht/cam2/motion", "home/sht/cam2/person",
                                                    "home/sht/cam2/person/snapshot"]
    assert state.current() == []


def test_settings_payloads() -> None:
    assert setting_payload("notify", "off") == "OFF" and setting_payload("notify", "motion") == "ON"
    assert setting_payload("recording_mode", "objects") == "objects"
    assert setting_payload("motion_sensitivity", 0.25) == "0.25"


def test_node_state_is_published_at_most_every_ten_seconds() -> None:
    state = RetainedState(Topics("sht"))
    health = NodeHealth(node="node0", process=ProcessReading(cpu_percent=12.5, temperature_c=48.0),
                        cameras={"cam2": CameraHealth(state="up", fps=9.8, configured_fps=10.0, frames_dropped=3)},
                        spool=SpoolHealth(segments=4, events=1, bytes=1000, oldest_age_s=2.5, lost_segments=0))
    node = SimpleNamespace(node="node0", state="up", changed_us=10 * S, last_seen_us=12 * S, health=health,
                           cameras=("cam2",))
    (first,) = state.node_state(node, now=100.0)
    body = json.loads(first.payload)
    assert first.topic == "sht/node0/state" and body["state"] == "up" and body["cpu_percent"] == 12.5
    assert body["temperature_c"] == 48.0 and body["spool"]["segments"] == 4
    assert body["cameras"]["cam2"] == {"state": "up", "fps": 9.8, "configured_fps": 10.0, "frames_dropped": 3,
                                       "error": None}
    node.state = "down"
    assert state.node_state(node, now=100.0 + NODE_STATE_EVERY_S - 1) == [], "not within 10 s of the last"
    (later,) = state.node_state(node, now=100.0 + NODE_STATE_EVERY_S)
    assert json.loads(later.payload)["state"] == "down"
    assert state.node_state(node, now=200.0) == [], "unchanged: not again"
