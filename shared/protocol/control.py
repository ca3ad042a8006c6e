"""The node ↔ store control link at ``/control``: announcements, heartbeats, settings, event labels.

A node opens the link, says ``hello`` (its id, port and cameras), then sends a
``heartbeat`` with its health every few seconds. The store answers a hello with
the runtime settings of each of the node's cameras and pushes a ``settings``
message whenever one changes, and an ``event_label`` with its object detection's
verdict on one of the node's events: a label found, or null once the event is
over and analysed with none of the camera's objects in it (the ``objects``
recording mode keeps footage unless the verdict is null; nodes of hello version
2 and later understand it).
All JSON text messages; sans-I/O like the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from shared.ids import InvalidId, check_id
from shared.protocol.errors import ProtocolError, parse_json_object
from shared.protocol.health import NodeHealth
from shared.protocol.times import time_in_range
from shared.settings import CameraSettings, SettingError, label_problem

HEARTBEAT_INTERVAL_S = 2.0
MISSED_HEARTBEATS_DOWN = 3  # a node is down after this many intervals of silence
MAX_CONTROL_BYTES = 256 * 1024
CONTROL_VERSION = 2  # 2: the node understands event_label; a hello without a version is 1
EVENT_LABEL_VERSION = 2


@dataclass(frozen=True)
class Hello:
    node: str
    port: int
    cameras: tuple[str, ...]
    version: int = CONTROL_VERSION
    tls: bool = False  # the node serves wss:// and https:// (its fleet URL says https, so the relay uses wss)

    def serialize(self) -> str:
        return json.dumps({"type": "hello", "node": self.node, "port": self.port,
                           "cameras": list(self.cameras), "version": self.version, "tls": self.tls})


@dataclass(frozen=True)
class Heartbeat:
    health: NodeHealth

    def serialize(self) -> str:
        return json.dumps({"type": "heartbeat", "health": self.health.to_json()})


@dataclass(frozen=True)
class SettingsPush:
    """The complete current runtime settings of one camera (defaults filled in)."""

    camera: str
    settings: CameraSettings = field(default_factory=CameraSettings)

    def serialize(self) -> str:
        return json.dumps({"type": "settings", "camera": self.camera, "settings": self.settings.to_json()})


@dataclass(frozen=True)
class Revocations:
    """Ids of every revoked token, so a node refuses them offline too."""

    token_ids: tuple[str, ...] = ()

    def serialize(self) -> str:
        return json.dumps({"type": "revoked", "token_ids": list(self.token_ids)})


@dataclass(frozen=True)
class EventLabel:
    """The store's verdict on the event of ``camera`` that started at ``start_us`` (the node's own stamp, as its
    EventRecord said): it found ``label`` there, or (None, JSON null) it analysed the finished event and found
    none of the camera's objects. Silence is no verdict: the node never reads it as None."""

    camera: str
    start_us: int
    label: str | None

    def serialize(self) -> str:
        return json.dumps({"type": "event_label", "camera": self.camera, "start_us": self.start_us,
                           "label": self.label})


ControlMessage = Hello | Heartbeat | SettingsPush | Revocations | EventLabel


def parse_control(message: str | bytes) -> ControlMessage:
    if isinstance(message, bytes):
        raise ProtocolError("unexpected-binary", "control messages are JSON text")
    if len(message) > MAX_CONTROL_BYTES:
        raise ProtocolError("too-large", f"control message of {len(message)} bytes")
    obj = parse_json_object(message)
    kind = obj.get("type")
    try:
        if kind == "hello":
            port, cameras, version, tls = obj["port"], obj["cameras"], obj.get("version", 1), obj.get("tls", False)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ProtocolError("bad-field", f"hello port must be 0..65535, got {port!r}")
            if not isinstance(cameras, list):
                raise ProtocolError("bad-field", "hello cameras must be an array of ids")
            if not isinstance(tls, bool):
                raise ProtocolError("bad-field", f"hello tls must be true or false, got {tls!r}")
            return Hello(check_id(obj["node"], "node id"), port,
                         tuple(check_id(c, "camera id") for c in cameras),
                         version if isinstance(version, int) else 1, tls)
        if kind == "heartbeat":
            return Heartbeat(NodeHealth.from_json(obj["health"]))
        if kind == "settings":
            settings = obj["settings"]
            if not isinstance(settings, dict):
                raise ProtocolError("bad-field", "settings must be an object")
            try:  # a newer store's settings this node does not know are not its business
                values = CameraSettings.from_json(settings, ignore_unknown=True)
            except SettingError as exc:
                raise ProtocolError("bad-field", str(exc), f"settings.{exc.key}") from None
            return SettingsPush(check_id(obj["camera"], "camera id"), values)
        if kind == "revoked":
            ids = obj["token_ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) and len(i) <= 64 for i in ids):
                raise ProtocolError("bad-field", "token_ids must be an array of strings")
            return Revocations(tuple(ids))
        if kind == "event_label":
            start_us, label = obj["start_us"], obj["label"]
            if isinstance(start_us, bool) or not isinstance(start_us, int) or not time_in_range(start_us):
                raise ProtocolError("bad-field", f"event_label start_us must be a time in µs, got {start_us!r}",
                                    "start_us")
            if label is not None and (problem := label_problem(label)) is not None:  # null: analysed, none found
                raise ProtocolError("bad-field", f"event_label: {problem} (or null: analysed, none found)", "label")
            return EventLabel(check_id(obj["camera"], "camera id"), start_us, label)
    except KeyError as exc:
        raise ProtocolError("missing-field", f"{kind} message lacks field {exc.args[0]!r}") from None
    except InvalidId as exc:
        raise ProtocolError("bad-field", str(exc)) from None
    raise ProtocolError("unknown-type", f"unknown control message type {kind!r}")
