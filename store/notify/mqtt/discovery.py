"""Home Assistant MQTT discovery: the config each camera's entities announce themselves with. Pure functions.

Home Assistant's single-component discovery (https://www.home-assistant.io/integrations/mqtt/#discovery-messages):
a retained JSON config on ``<discovery_prefix>/<component>/<object_id>/config``, object id = unique id (their
stated best practice), an empty retained payload on the same topic removes the entity. Keys are the full names
of each component's documented configuration variables (the ``~`` abbreviations are optional; tests/notify/
test_mqtt_discovery.py checks every payload against the documented keys).

Per camera: a ``binary_sensor`` (motion), a ``select`` (recording mode), a ``switch`` (notifications), and per
object label it looks for (its ``objects`` setting) a ``sensor`` (how many are in view) and a ``camera`` (the
latest labelled event's snapshot). They belong to one device per node (``device.identifiers``: the node's), so a
node's cameras are grouped in Home Assistant. Unique ids are made of the topic prefix, the camera id and the
entity's kind, so they are the same after every restart and differ between two stores using two prefixes.

Availability: every entity needs ``PREFIX/available`` to say ``online`` (the store is connected; the broker says
``offline`` for it as its last will) *and* its node's ``PREFIX/NODE/state`` to say ``up`` (``availability_mode:
all``), so the cameras of a node that is down show as unavailable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.settings import RECORDING_MODES
from store.notify.mqtt.topics import OFF, OFFLINE, ON, ONLINE, Topics, label_level

MANUFACTURER = "SHT CCTV"
MODEL = "SHT node"

# (component, entity kind); the kind is the unique id's last part.
MOTION = ("binary_sensor", "motion")
RECORDING = ("select", "recording_mode")
NOTIFICATIONS = ("switch", "notify")
COUNT = ("sensor", "count")
SNAPSHOT = ("camera", "snapshot")


@dataclass(frozen=True)
class CameraEntities:
    """What decides a camera's discovery configs: its id, its node, the labels it looks for."""

    camera: str
    node: str
    labels: tuple[str, ...]


def id_base(topics: Topics) -> str:
    """The first part of every unique id: the topic prefix as an id ('sht', 'home/sht' -> 'home_sht')."""
    return label_level(topics.prefix)


def unique_id(topics: Topics, camera: str, kind: str, label: str | None = None) -> str:
    parts = [id_base(topics), camera] + ([label_level(label)] if label is not None else []) + [kind]
    return "_".join(parts)


def config_topic(discovery_prefix: str, component: str, object_id: str) -> str:
    return f"{discovery_prefix}/{component}/{object_id}/config"


def device(topics: Topics, node: str, sw_version: str) -> dict[str, Any]:
    """The Home Assistant device of a node: its cameras' entities all name it."""
    return {"identifiers": [f"{id_base(topics)}_node_{node}"], "name": node, "manufacturer": MANUFACTURER,
            "model": MODEL, "sw_version": sw_version}


def availability(topics: Topics, node: str) -> dict[str, Any]:
    """``availability`` and ``availability_mode``: the store connected and the camera's node up."""
    return {"availability": [
        {"topic": topics.available, "payload_available": ONLINE, "payload_not_available": OFFLINE},
        {"topic": topics.node_state(node), "value_template": "{{ value_json.state }}",
         "payload_available": "up", "payload_not_available": "down"},
    ], "availability_mode": "all"}


def _common(topics: Topics, entities: CameraEntities, kind: str, name: str, sw_version: str,
            label: str | None = None) -> dict[str, Any]:
    return {"name": name, "unique_id": unique_id(topics, entities.camera, kind, label),
            **availability(topics, entities.node), "device": device(topics, entities.node, sw_version)}


def motion_config(topics: Topics, entities: CameraEntities, sw_version: str) -> dict[str, Any]:
    return {**_common(topics, entities, MOTION[1], f"{entities.camera} motion", sw_version),
            "state_topic": topics.motion(entities.camera), "device_class": "motion",
            "payload_on": ON, "payload_off": OFF}


def count_config(topics: Topics, entities: CameraEntities, label: str, sw_version: str) -> dict[str, Any]:
    return {**_common(topics, entities, COUNT[1], f"{entities.camera} {label} count", sw_version, label),
            "state_topic": topics.label(entities.camera, label), "state_class": "measurement",
            "icon": "mdi:counter"}


def snapshot_config(topics: Topics, entities: CameraEntities, label: str, sw_version: str) -> dict[str, Any]:
    return {**_common(topics, entities, SNAPSHOT[1], f"{entities.camera} {label} snapshot", sw_version, label),
            "topic": topics.snapshot(entities.camera, label)}


def recording_config(topics: Topics, entities: CameraEntities, sw_version: str) -> dict[str, Any]:
    camera = entities.camera
    # qos 1: a command Home Assistant sends is not lost on the way; retain false: a retained command would be
    # applied again at every reconnect.
    return {**_common(topics, entities, RECORDING[1], f"{camera} recording mode", sw_version),
            "command_topic": topics.setting_set(camera, "recording_mode"),
            "state_topic": topics.setting_state(camera, "recording_mode"), "options": list(RECORDING_MODES),
            "qos": 1, "retain": False, "entity_category": "config", "icon": "mdi:record-rec"}


def notifications_config(topics: Topics, entities: CameraEntities, sw_version: str) -> dict[str, Any]:
    camera = entities.camera
    return {**_common(topics, entities, NOTIFICATIONS[1], f"{camera} notifications", sw_version),
            "command_topic": topics.setting_set(camera, "notify"),
            "state_topic": topics.setting_state(camera, "notify"), "payload_on": ON, "payload_off": OFF,
            "qos": 1, "retain": False, "entity_category": "config", "icon": "mdi:bell"}


def camera_configs(topics: Topics, discovery_prefix: str, entities: CameraEntities,
                   sw_version: str) -> dict[str, dict[str, Any]]:
    """Every discovery config of one camera: config topic -> payload."""
    out: dict[str, dict[str, Any]] = {}

    def add(component_kind: tuple[str, str], payload: dict[str, Any]) -> None:
        out[config_topic(discovery_prefix, component_kind[0], payload["unique_id"])] = payload

    add(MOTION, motion_config(topics, entities, sw_version))
    add(RECORDING, recording_config(topics, entities, sw_version))
    add(NOTIFICATIONS, notifications_config(topics, entities, sw_version))
    for label in entities.labels:
        add(COUNT, count_config(topics, entities, label, sw_version))
        add(SNAPSHOT, snapshot_config(topics, entities, label, sw_version))
    return out


def encode(payload: dict[str, Any]) -> bytes:
    """A config as the retained message's bytes (sorted keys: the same config is the same bytes)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
