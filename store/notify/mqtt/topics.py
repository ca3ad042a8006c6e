"""Every MQTT topic the store publishes or listens to, named in one place (docs/protocol.md "MQTT topics").

Camera and node ids are topic-safe by construction (shared/ids.py: a-z, 0-9, '_', '-'). An object label may hold
a space or other characters ("traffic light"); in a topic it is ``label_level(label)``: every character but
letters, digits, '_' and '-' becomes '_' ("traffic_light"), so a label never adds a level or a wildcard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.settings import MOTION_SENSITIVITY, NOTIFY, RECORDING_MODE

# Command topic level -> the runtime setting it changes (``PREFIX/CAMERA/LEVEL/set``, echoed on ``.../state``).
COMMANDS: dict[str, str] = {"recording_mode": RECORDING_MODE, "motion_sensitivity": MOTION_SENSITIVITY,
                            "notify": NOTIFY}

ONLINE, OFFLINE = "online", "offline"  # PREFIX/available; Home Assistant's default availability payloads
ON, OFF = "ON", "OFF"  # motion and the notify switch; Home Assistant's default binary payloads

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Levels right under a camera that are not labels: a model whose labels file has "motion" or "error" must not
# publish its counts on the camera's motion or error topic ("state": PREFIX/NODE/state, a node named as a camera).
CAMERA_LEVELS = frozenset({"motion", "error", "state"})


def label_level(label: str) -> str:
    """An object label as one topic level (and as part of a Home Assistant object id)."""
    return _UNSAFE.sub("_", label)


def label_topic_level(label: str) -> str:
    """The level of a label's count topic: ``label_level``, with ``_label`` added to one a camera uses itself."""
    level = label_level(label)
    return f"{level}_label" if level in CAMERA_LEVELS else level


@dataclass(frozen=True)
class Topics:
    prefix: str  # checked by options.check_topic_levels

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    def motion(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/motion"

    def label(self, camera: str, label: str) -> str:
        return f"{self.prefix}/{camera}/{label_topic_level(label)}"

    def snapshot(self, camera: str, label: str) -> str:
        return f"{self.label(camera, label)}/snapshot"

    def node_state(self, node: str) -> str:
        return f"{self.prefix}/{node}/state"

    def setting_state(self, camera: str, command: str) -> str:
        return f"{self.prefix}/{camera}/{command}/state"

    def setting_set(self, camera: str, command: str) -> str:
        return f"{self.prefix}/{camera}/{command}/set"

    def error(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/error"

    def command_filters(self) -> list[str]:
        """What the store subscribes to: one filter per command, any camera."""
        return [f"{self.prefix}/+/{command}/set" for command in COMMANDS]

    def parse_command(self, topic: str) -> tuple[str, str] | None:
        """(camera, command level) of a command topic, or None for any other topic."""
        if not topic.startswith(self.prefix + "/"):
            return None
        levels = topic[len(self.prefix) + 1:].split("/")
        if len(levels) != 3 or levels[2] != "set" or levels[1] not in COMMANDS or not levels[0]:
            return None
        return levels[0], levels[1]
