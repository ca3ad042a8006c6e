"""The query API's ``fleet`` result: every node the store knows, its state, health and recent history,
and every camera with its node and settings.

The store builds it (store/nodes/fleet.py keeps the typed health of each
heartbeat) and the console, ``sht relay`` and the CLI read it with ``from_json``.
A node's ``health`` is the ``NodeHealth`` its last heartbeat carried (None before
the first); ``history`` holds a few numbers per heartbeat for sparklines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.fields import FieldReader
from shared.protocol.detector_health import DetectorHealth
from shared.protocol.errors import read_message
from shared.protocol.health import NodeHealth
from shared.protocol.readings import flat_json, read_flat


@dataclass(frozen=True)
class CameraSample:
    fps: float | None = None
    bitrate_bps: float | None = None
    frames_dropped: int | None = None


@dataclass(frozen=True)
class HealthSample:
    """The few numbers of one heartbeat that the console draws as sparklines."""

    at_us: int
    cpu_percent: float | None = None
    temperature_c: float | None = None
    spool_segments: int | None = None
    cameras: dict[str, CameraSample] = field(default_factory=dict)

    @classmethod
    def of(cls, health: NodeHealth, at_us: int) -> HealthSample:
        return cls(at_us, health.process.cpu_percent, health.process.temperature_c,
                   health.spool.segments if health.spool is not None else None,
                   {cam: CameraSample(h.fps, h.bitrate_bps, h.frames_dropped) for cam, h in health.cameras.items()})

    def to_json(self) -> dict[str, Any]:
        return {"at_us": self.at_us, "cpu_percent": self.cpu_percent, "temperature_c": self.temperature_c,
                "spool_segments": self.spool_segments,
                "cameras": {cam: flat_json(s) for cam, s in self.cameras.items()}}

    @classmethod
    def read(cls, r: FieldReader) -> HealthSample:
        return cls(r.integer("at_us"), r.number("cpu_percent", None, nullable=True),
                   r.number("temperature_c", None, nullable=True), r.integer("spool_segments", None, nullable=True),
                   {cam: read_flat(CameraSample, c) for cam, c in r.keyed_children("cameras", {}).items()})


@dataclass(frozen=True)
class NodeSummary:
    """One node as the store sees it."""

    node: str
    state: str  # up, down, or unknown (known from the index, not heard from since the store started)
    url: str | None = None  # where its /live and /health are
    cameras: tuple[str, ...] = ()
    last_seen_us: int | None = None
    state_changed_us: int | None = None
    health: NodeHealth | None = None
    history: tuple[HealthSample, ...] = ()
    # The store holding its control link (HOST:PORT; stores sharing an index show each other's nodes); None: none
    # while it is down, or an older store that does not say.
    store: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "url": self.url, "cameras": list(self.cameras),
                "last_seen_us": self.last_seen_us, "state_changed_us": self.state_changed_us,
                "health": self.health.to_json() if self.health is not None else None,
                "history": [h.to_json() for h in self.history], "store": self.store}

    @classmethod
    def read(cls, r: FieldReader) -> NodeSummary:
        health = r.optional_child("health")
        return cls(r.string("node"), r.string("state"), r.string("url", None, nullable=True),
                   tuple(r.idents("cameras", [])), r.integer("last_seen_us", None, nullable=True),
                   r.integer("state_changed_us", None, nullable=True),
                   NodeHealth.read(health) if health is not None else None,
                   tuple(HealthSample.read(h) for h in r.children("history", [])),
                   r.string("store", None, nullable=True))


@dataclass(frozen=True)
class FleetCamera:
    """A camera the store knows: announced by a node now, or with footage in the index."""

    node: str | None  # the node announcing it now, None if none does
    state: str  # its node's state, "unknown" without one
    settings: dict[str, Any] = field(default_factory=dict)  # runtime settings (typed by shared/settings.py)

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state, "settings": self.settings}

    @classmethod
    def read(cls, r: FieldReader) -> FleetCamera:
        return cls(r.string("node", None, nullable=True), r.string("state", "unknown"),
                   r.json_object("settings", {}, nullable=True) or {})


@dataclass(frozen=True)
class FleetReport:
    """The ``fleet`` result."""

    nodes: tuple[NodeSummary, ...]
    cameras: dict[str, FleetCamera]
    now_us: int  # the store's clock when it answered
    detector: DetectorHealth | None = None  # the store's object detector (None: an older store)

    def to_json(self) -> dict[str, Any]:
        return {"nodes": [n.to_json() for n in self.nodes],
                "cameras": {cam: c.to_json() for cam, c in self.cameras.items()}, "now_us": self.now_us,
                "detector": self.detector.to_json() if self.detector is not None else None}

    @classmethod
    def read(cls, r: FieldReader) -> FleetReport:
        detector = r.optional_child("detector")
        return cls(tuple(NodeSummary.read(n) for n in r.children("nodes")),
                   {cam: FleetCamera.read(c) for cam, c in r.keyed_children("cameras", {}).items()},
                   r.integer("now_us"), DetectorHealth.read(detector) if detector is not None else None)

    @classmethod
    def from_json(cls, data: object) -> FleetReport:
        return read_message(data, "fleet result", cls.read)
