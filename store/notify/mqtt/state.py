"""The retained state the store keeps on the broker, and which messages a change makes. No I/O: the bridge feeds
it event changes, settings and the fleet, and publishes what it returns.

- ``PREFIX/CAMERA/motion``: ``ON`` while the camera's motion event goes on (the newest open one), else ``OFF``;
- ``PREFIX/CAMERA/LABEL``: how many of that object the detector saw at once in the camera's event going on now
  (the event's ``labels``), ``0`` when none goes on; one topic per label of the camera's ``objects`` setting and
  per label an event reported;
- ``PREFIX/CAMERA/LABEL/snapshot``: the JPEG of the latest event labelled LABEL (a ``Snapshot`` reference: the
  bridge reads the bytes from the index when it publishes, so the outbox holds no images);
- ``PREFIX/CAMERA/SETTING/state``: ``recording_mode`` and ``motion_sensitivity`` as their values, ``notify`` as
  ``ON`` (any mode but off) or ``OFF``, the echo of commands and of changes made any other way;
- ``PREFIX/NODE/state``: the node's state (up, down, unknown) and health, at most every ``NODE_STATE_EVERY_S``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.clock import iso_utc
from shared.settings import MOTION_SENSITIVITY, NOTIFY, NOTIFY_OFF, OBJECTS, RECORDING_MODE
from store.notify.changes import EventChange, EventObject
from store.notify.mqtt.topics import OFF, ON, Topics

NODE_STATE_EVERY_S = 10.0  # the "updated at most every 10 s"


@dataclass(frozen=True)
class Message:
    """One retained message to publish: its topic and payload text."""

    topic: str
    payload: str


@dataclass(frozen=True)
class Snapshot:
    """The JPEG of ``event_id`` to publish, retained, on ``topic`` (read from the index when published)."""

    topic: str
    event_id: int


Retained = Message | Snapshot


def setting_payload(command: str, value: Any) -> str:
    """A setting's value as its ``.../state`` payload."""
    if command == NOTIFY:
        return OFF if value == NOTIFY_OFF else ON
    return value if isinstance(value, str) else json.dumps(value)


def node_payload(state: Any) -> dict[str, Any]:
    """``PREFIX/NODE/state`` of a store.nodes.fleet.NodeState: its state and what its last heartbeat said."""
    health = state.health
    out: dict[str, Any] = {"node": state.node, "state": state.state,
                           "since": None if state.changed_us is None else iso_utc(state.changed_us),
                           "last_seen": None if state.last_seen_us is None else iso_utc(state.last_seen_us),
                           "cpu_percent": None, "temperature_c": None, "spool": None, "cameras": {}}
    if health is None:
        out["cameras"] = {camera: None for camera in state.cameras}
        return out
    out["cpu_percent"] = health.process.cpu_percent
    soc_temperature = health.soc.temperature_c if health.soc is not None else None
    out["temperature_c"] = health.process.temperature_c if health.process.temperature_c is not None \
        else soc_temperature
    if health.spool is not None:
        spool = health.spool
        out["spool"] = {"segments": spool.segments, "events": spool.events, "bytes": spool.bytes,
                        "oldest_age_s": spool.oldest_age_s, "lost_segments": spool.lost_segments}
    out["cameras"] = {camera: {"state": c.state, "fps": c.fps, "configured_fps": c.configured_fps,
                               "frames_dropped": c.frames_dropped, "error": c.error}
                      for camera, c in sorted(health.cameras.items())}
    return out


@dataclass
class CameraState:
    labels: tuple[str, ...] = ()  # its ``objects`` setting
    open_event: EventObject | None = None  # its newest motion event going on
    seen_labels: set[str] = field(default_factory=set)  # labels events reported (their count topics exist)


class RetainedState:
    """What the store has said (or will say) on each retained topic; ``current()`` is all of it."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.cameras: dict[str, CameraState] = {}
        self._values: dict[str, Retained] = {}  # topic -> its latest message
        self._node_published: dict[str, tuple[float, str]] = {}  # node -> (when, payload) last published

    def current(self) -> list[Retained]:
        """Every retained message as it stands now (republished in full on every connect)."""
        return list(self._values.values())

    def _set(self, message: Retained) -> list[Retained]:
        """``[message]`` if it changes its topic's value, else []."""
        if self._values.get(message.topic) == message:
            return []
        self._values[message.topic] = message
        return [message]

    def _camera(self, camera: str) -> CameraState:
        return self.cameras.setdefault(camera, CameraState())

    # ---- cameras: settings ----

    def camera_settings(self, camera: str, values: dict[str, Any]) -> list[Retained]:
        """A camera's runtime settings as read now: their echo, and its count topics (``objects``)."""
        state = self._camera(camera)
        out: list[Retained] = []
        for command, key in ((RECORDING_MODE, RECORDING_MODE), (MOTION_SENSITIVITY, MOTION_SENSITIVITY),
                             ("notify", NOTIFY)):
            if key in values:
                out += self._set(Message(self.topics.setting_state(camera, command),
                                         setting_payload(key, values[key])))
        if OBJECTS in values:
            state.labels = tuple(values[OBJECTS])
        if (self.topics.motion(camera)) not in self._values:
            out += self._set(Message(self.topics.motion(camera), OFF))
        out += self._counts(camera)
        return out

    def _counts(self, camera: str) -> list[Retained]:
        state = self._camera(camera)
        event = state.open_event
        seen = (event.labels or {}) if event is not None else {}
        out: list[Retained] = []
        for label in sorted(set(state.labels) | state.seen_labels | set(seen)):
            state.seen_labels.add(label)
            out += self._set(Message(self.topics.label(camera, label), str(int(seen.get(label, 0)))))
        return out

    # ---- cameras: events ----

    def event_changed(self, change: EventChange) -> list[Retained]:
        """Motion, counts and snapshots after an event change (what ``PREFIX/events`` carries is the change)."""
        after = change.after
        if after.kind != "motion":
            return []
        state = self._camera(after.camera)
        out: list[Retained] = []
        current = state.open_event
        if after.open:
            if current is None or current.id == after.id or after.start_us >= current.start_us:
                state.open_event = after
        elif current is not None and current.id == after.id:
            state.open_event = None
        # A late change of an older event (a label after it ended, its node's own close) moves nothing but its
        # snapshot: the camera's motion and counts are its newest event's.
        out += self._set(Message(self.topics.motion(after.camera), ON if state.open_event is not None else OFF))
        out += self._counts(after.camera)
        if after.label is not None and after.snapshot is not None and _new_picture(change):
            out += self._set(Snapshot(self.topics.snapshot(after.camera, after.label), after.id))
        return out

    def latest_snapshot(self, camera: str, label: str, event_id: int) -> list[Retained]:
        """The snapshot of the latest event labelled ``label`` found in the index at start."""
        topic = self.topics.snapshot(camera, label)
        return [] if topic in self._values else self._set(Snapshot(topic, event_id))

    # ---- nodes ----

    def node_state(self, state: Any, now: float) -> list[Retained]:
        """A node's state message if it changed and the last was published ``NODE_STATE_EVERY_S`` ago or more."""
        payload = json.dumps(node_payload(state), separators=(",", ":"), sort_keys=True)
        last = self._node_published.get(state.node)
        if last is not None and (last[1] == payload or now - last[0] < NODE_STATE_EVERY_S):
            return []
        self._node_published[state.node] = (now, payload)
        return self._set(Message(self.topics.node_state(state.node), payload))

    # ---- removal ----

    def forget_camera(self, camera: str) -> list[str]:
        """A camera gone from the fleet: the retained topics to clear (an empty retained payload)."""
        self.cameras.pop(camera, None)
        prefix = f"{self.topics.prefix}/{camera}/"
        gone = [topic for topic in self._values if topic.startswith(prefix)]
        for topic in gone:
            del self._values[topic]
        return gone


def _new_picture(change: EventChange) -> bool:
    """Whether the change may carry a different snapshot than before (a new label, score or box)."""
    before, after = change.before, change.after
    return before is None or (before.snapshot, before.label, before.score, before.box) != (
        after.snapshot, after.label, after.score, after.box)
