"""A node's health: what ``GET /health`` answers and each ``heartbeat`` on ``/control`` carries.

``NodeHealth.to_json`` is the JSON documented in docs/protocol.md; ``from_json``
reads it back. Reading is lenient about *absence* (a node of an older version
may not send a field: it reads as None) and strict about *types* (a field that
is there must have its type, or the whole message is a ``ProtocolError`` naming
it). Groups a node sends only sometimes (a packet source's stream state, the
capture clock, the SoC reading before its first refresh) are left out of the
JSON when absent, as the node leaves them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shared.fields import FieldReader
from shared.protocol.errors import read_message
from shared.protocol.readings import flat_json, read_flat
from shared.protocol.times import TIME_BOUNDS
from shared.settings import check_labels, label_problem

MAX_LABEL_ZONES = 32  # per camera
MAX_ZONE_POINTS = 256  # per polygon


@dataclass(frozen=True)
class ProcessReading:
    """CPU and memory of the node's process and machine (shared/health.py ``ProcessMonitor``)."""

    cpu_percent: float | None = None
    process_cpu_percent: float | None = None
    memory_percent: float | None = None
    process_rss_bytes: int | None = None
    temperature_c: float | None = None


@dataclass(frozen=True)
class GpuReading:
    """One GPU as NVML reports it (shared/soc.py ``nvml_reading``)."""

    index: int | None = None
    name: str | None = None
    temperature_c: float | None = None
    utilization_percent: float | None = None
    encoder_percent: float | None = None
    memory_used_mb: int | None = None


@dataclass(frozen=True)
class Throttled:
    """vcgencmd ``get_throttled``: the flags set now and since boot."""

    raw: str
    now: tuple[str, ...] = ()
    since_boot: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"raw": self.raw, "now": list(self.now), "since_boot": list(self.since_boot)}

    @classmethod
    def read(cls, r: FieldReader) -> Throttled:
        return cls(r.string("raw"), tuple(_strings(r, "now")), tuple(_strings(r, "since_boot")))


@dataclass(frozen=True)
class SocReading:
    """The board: model, temperature, throttling, clocks, GPUs (shared/soc.py ``soc_reading``).

    Before its first refresh the node sends only ``{"state": "reading…"}``, and after a failed one only
    ``{"error": …}``; ``state`` and ``error`` say which, and the JSON is then just that one field.
    """

    model: str | None = None
    temperature_c: float | None = None
    temperature_source: str | None = None
    throttled: Throttled | None = None
    gpu_mem_mb: int | None = None
    clocks_hz: dict[str, int | None] | None = None
    gpus: tuple[GpuReading, ...] | str | None = None  # a string says why there are none
    sources: dict[str, bool] | None = None  # which of vcgencmd, thermal_zone and nvml answered
    state: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        if self.state is not None:
            return {"state": self.state}
        gpus = [flat_json(g) for g in self.gpus] if isinstance(self.gpus, tuple) else self.gpus
        return {"model": self.model, "temperature_c": self.temperature_c,
                "temperature_source": self.temperature_source,
                "throttled": self.throttled.to_json() if self.throttled is not None else None,
                "gpu_mem_mb": self.gpu_mem_mb, "clocks_hz": self.clocks_hz, "gpus": gpus, "sources": self.sources}

    @classmethod
    def read(cls, r: FieldReader) -> SocReading:
        if r.has("error"):
            return cls(error=r.string("error", empty=True))
        if r.has("state"):
            return cls(state=r.string("state"))
        throttled = r.optional_child("throttled")
        clocks = r.json_object("clocks_hz", None, nullable=True)
        for name, value in (clocks or {}).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise r.error(f"clocks_hz.{name}", f"must be an integer or null, got {value!r}")
        sources = r.json_object("sources", None, nullable=True)
        for name, value in (sources or {}).items():
            if not isinstance(value, bool):
                raise r.error(f"sources.{name}", f"must be true or false, got {value!r}")
        gpus: tuple[GpuReading, ...] | str | None
        if isinstance(r.data.get("gpus"), str):
            gpus = r.string("gpus", empty=True)
        else:
            gpus = tuple(read_flat(GpuReading, g) for g in r.children("gpus", [])) if r.data.get("gpus") is not None \
                else None
        return cls(r.string("model", None, nullable=True), r.number("temperature_c", None, nullable=True),
                   r.string("temperature_source", None, nullable=True),
                   Throttled.read(throttled) if throttled is not None else None,
                   r.integer("gpu_mem_mb", None, nullable=True), clocks, gpus, sources)


@dataclass(frozen=True)
class GpuSummary:
    """A node's GPU/VideoCore in four numbers, as the console's fleet view shows it (optional; nodes may send it)."""

    percent: float | None = None
    temperature_c: float | None = None
    memory_mb: float | None = None
    throttled: bool | None = None


@dataclass(frozen=True)
class MotionHealth:
    """A camera's motion detector (node/motion/worker.py)."""

    detector: str | None = None
    sensitivity: float | None = None
    frames: int | None = None
    dropped: int | None = None
    events: int | None = None
    active: bool | None = None
    cpu_ms_per_frame: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SubstreamFrames:
    """Where the sub stream's pictures came from: the source's own (a Pi's ISP lores) or libswscale."""

    from_source: int | None = None
    scaled: int | None = None


@dataclass(frozen=True)
class StreamHealth:
    """A packet source's stream (node/capture/stream.py): only cameras fed by one send these fields."""

    mode: str | None = None  # passthrough or transcode
    reconnects: int | None = None
    source_error: str | None = None
    thread_cpu_s: float | None = None
    keyframes_completed: int | None = None


@dataclass(frozen=True)
class ClockHealth:
    """The capture clock (node/capture/timebase.py): how far stamps run from the wall clock, and its steps."""

    offset_us: int | None = None  # the last stamp minus the wall clock then: > 0 while running ahead after a step back
    steps_forward: int | None = None  # forward steps of the wall clock followed
    steps_back: int | None = None  # backward steps absorbed (the clock went back, or started behind the floor)


@dataclass(frozen=True)
class RecordingHealth:
    """A camera's recorder (node/recording/recorder.py) and motion-mode gate (node/recording/modes.py)."""

    segments_spooled: int | None = None
    segments_failed: int | None = None
    frames_skipped: int | None = None
    journal_errors: int | None = None
    held: int | None = None
    discarded_quiet: int | None = None
    trimmed_bytes: int | None = None
    # objects mode: events whose footage was kept because no verdict came within the grace (older nodes: absent)
    kept_without_verdict: int | None = None


@dataclass(frozen=True)
class LabelZone:
    """An include zone that requires labels (a node's config: ``"objects": [...]`` on a motion zone): the store
    gives an event one of ``objects`` only for an object whose box's bottom-centre lies inside ``points``
    (shared/label_zones.py)."""

    objects: tuple[str, ...]
    points: tuple[tuple[float, float], ...]  # polygon vertices, normalised x, y, in order

    def to_json(self) -> dict[str, Any]:
        return {"objects": list(self.objects), "points": [[x, y] for x, y in self.points]}

    @classmethod
    def read(cls, r: FieldReader) -> LabelZone:
        try:
            objects = check_labels(r.data.get("objects"), "objects")
        except ValueError as exc:
            raise r.error("objects", str(exc)) from None
        if not objects:
            raise r.error("objects", "must name at least one label")
        return cls(tuple(objects), _zone_points(r))


def _zone_points(r: FieldReader) -> tuple[tuple[float, float], ...]:
    raw = r.data.get("points")
    if not isinstance(raw, list) or not 3 <= len(raw) <= MAX_ZONE_POINTS:
        raise r.error("points", f"must be an array of 3 to {MAX_ZONE_POINTS} [x, y] points, got {raw!r:.80}")
    points = []
    for i, point in enumerate(raw):
        if not (isinstance(point, list) and len(point) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
                for v in point)):
            raise r.error(f"points[{i}]", f"must be [x, y] with both in 0..1, got {point!r:.80}")
        points.append((float(point[0]), float(point[1])))
    return tuple(points)


@dataclass(frozen=True)
class NamedZone:
    """An include zone with a name (a node's config: ``"name": "door"`` on a motion zone): an event whose box's
    bottom-centre lies inside ``points`` is "in" it (the event object's ``zones``, alert rules' ``notify_zones``:
    store/notify, docs/integrations.md)."""

    name: str
    points: tuple[tuple[float, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "points": [[x, y] for x, y in self.points]}

    @classmethod
    def read(cls, r: FieldReader) -> NamedZone:
        name = r.data.get("name")
        if (problem := label_problem(name)) is not None:
            raise r.error("name", problem.replace("a label", "a zone's name"))
        assert isinstance(name, str)
        return cls(name, _zone_points(r))


@dataclass(frozen=True)
class CameraHealth:
    """One camera on a node (node/capture/master.py ``Camera.health``, plus its ``recording``)."""

    state: str | None = None  # starting, up, connecting, reconnecting, stalled, stopped, down
    error: str | None = None
    source: str | None = None
    width: int | None = None
    height: int | None = None
    configured_fps: float | None = None
    fps: float | None = None
    bitrate_bps: float | None = None
    frames_encoded: int | None = None
    frames_dropped: int | None = None
    encoder: str | None = None
    codec: str | None = None
    encode_seconds: float | None = None
    subscribers: int | None = None
    sub_subscribers: int | None = None
    last_capture_us: int | None = None
    settings: dict[str, Any] | None = None  # the camera's runtime settings (typed by shared/settings.py)
    motion: MotionHealth | None = None
    substream: str | None = None  # WxH of the sub stream, None without one
    substream_frames: SubstreamFrames | None = None
    stream: StreamHealth | None = None  # packet sources only
    clock: ClockHealth | None = None
    recording: RecordingHealth | None = None
    label_zones: tuple[LabelZone, ...] | None = None  # None: a node older than label zones (it omits the key)
    zones: tuple[NamedZone, ...] | None = None  # its named include zones; None: a node older than them
    stalls: int | None = None  # times a frame source stopped delivering (state "stalled"); None: older node

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state, "error": self.error, "source": self.source, "width": self.width,
            "height": self.height, "configured_fps": self.configured_fps, "fps": self.fps,
            "bitrate_bps": self.bitrate_bps, "frames_encoded": self.frames_encoded,
            "frames_dropped": self.frames_dropped, "encoder": self.encoder, "codec": self.codec,
            "encode_seconds": self.encode_seconds, "subscribers": self.subscribers,
            "sub_subscribers": self.sub_subscribers, "last_capture_us": self.last_capture_us,
            "settings": self.settings,
            "motion": flat_json(self.motion) if self.motion is not None else None,
            "substream": self.substream,
            "substream_frames": flat_json(self.substream_frames) if self.substream_frames is not None else None,
        }
        if self.stream is not None:
            out.update(flat_json(self.stream))
        if self.clock is not None:
            out["clock"] = flat_json(self.clock)
        if self.recording is not None:
            out["recording"] = flat_json(self.recording)
        if self.label_zones is not None:
            out["label_zones"] = [zone.to_json() for zone in self.label_zones]
        if self.zones is not None:
            out["zones"] = [zone.to_json() for zone in self.zones]
        if self.stalls is not None:
            out["stalls"] = self.stalls
        return out

    @classmethod
    def read(cls, r: FieldReader) -> CameraHealth:
        motion, frames = r.optional_child("motion"), r.optional_child("substream_frames")
        clock, recording = r.optional_child("clock"), r.optional_child("recording")
        zones = r.children("label_zones") if r.data.get("label_zones") is not None else None
        if zones is not None and len(zones) > MAX_LABEL_ZONES:
            raise r.error("label_zones", f"at most {MAX_LABEL_ZONES} zones, got {len(zones)}")
        named = r.children("zones") if r.data.get("zones") is not None else None
        if named is not None and len(named) > MAX_LABEL_ZONES:
            raise r.error("zones", f"at most {MAX_LABEL_ZONES} named zones, got {len(named)}")
        return cls(
            state=r.string("state", None, nullable=True), error=r.string("error", None, nullable=True, empty=True),
            source=r.string("source", None, nullable=True), width=r.integer("width", None, nullable=True),
            height=r.integer("height", None, nullable=True),
            configured_fps=r.number("configured_fps", None, nullable=True),
            fps=r.number("fps", None, nullable=True), bitrate_bps=r.number("bitrate_bps", None, nullable=True),
            frames_encoded=r.integer("frames_encoded", None, nullable=True),
            frames_dropped=r.integer("frames_dropped", None, nullable=True),
            encoder=r.string("encoder", None, nullable=True), codec=r.string("codec", None, nullable=True),
            encode_seconds=r.number("encode_seconds", None, nullable=True),
            subscribers=r.integer("subscribers", None, nullable=True),
            sub_subscribers=r.integer("sub_subscribers", None, nullable=True),
            last_capture_us=r.integer("last_capture_us", None, nullable=True, **TIME_BOUNDS),
            settings=r.json_object("settings", None, nullable=True),
            motion=read_flat(MotionHealth, motion) if motion is not None else None,
            substream=r.string("substream", None, nullable=True),
            substream_frames=read_flat(SubstreamFrames, frames) if frames is not None else None,
            stream=read_flat(StreamHealth, r) if r.has("mode") else None,
            clock=read_flat(ClockHealth, clock) if clock is not None else None,
            recording=read_flat(RecordingHealth, recording) if recording is not None else None,
            label_zones=tuple(LabelZone.read(z) for z in zones) if zones is not None else None,
            zones=tuple(NamedZone.read(z) for z in named) if named is not None else None,
            stalls=r.integer("stalls", None, nullable=True),
        )


@dataclass(frozen=True)
class SpoolHealth:
    """What waits on the node for the store (node/store_link/uploader.py ``backlog``), and what was lost."""

    segments: int | None = None
    events: int | None = None
    bytes: int | None = None
    limit_bytes: int | None = None
    oldest_start_us: int | None = None
    oldest_age_s: float | None = None
    lost_segments: int | None = None
    lost_frames: int | None = None
    lost_bytes: int | None = None
    lost_by_camera: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"segments": self.segments, "events": self.events, "bytes": self.bytes,
                "limit_bytes": self.limit_bytes, "oldest_start_us": self.oldest_start_us,
                "oldest_age_s": self.oldest_age_s, "lost_segments": self.lost_segments,
                "lost_frames": self.lost_frames, "lost_bytes": self.lost_bytes,
                "lost_by_camera": dict(self.lost_by_camera)}

    @classmethod
    def read(cls, r: FieldReader) -> SpoolHealth:
        lost = r.json_object("lost_by_camera", {})
        for cam, count in lost.items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise r.error(f"lost_by_camera.{cam}", f"must be an integer, got {count!r}")
        return cls(**{name: reader(r, name) for name, reader in _SPOOL_NUMBERS.items()}, lost_by_camera=lost)


_SPOOL_NUMBERS: dict[str, Any] = {
    name: (lambda r, key: r.number(key, None, nullable=True)) if name == "oldest_age_s"
    else (lambda r, key: r.integer(key, None, nullable=True, **TIME_BOUNDS)) if name == "oldest_start_us"
    else (lambda r, key: r.integer(key, None, nullable=True))
    for name in ("segments", "events", "bytes", "limit_bytes", "oldest_start_us", "oldest_age_s",
                 "lost_segments", "lost_frames", "lost_bytes")
}


@dataclass(frozen=True)
class StoreLinkHealth:
    """The node's links to the store: uploads and the control link. With several stores (docs/cluster.md)
    ``url`` is the one the upload link is on (or tries next) and ``stores`` the whole list."""

    url: str | None = None
    link: str | None = None  # the upload link: connected, connecting, …
    last_error: str | None = None
    uploaded: int | None = None
    refused: int | None = None
    control: str | None = None  # the control link's state, or "not configured"
    stores: str | None = None  # every store the node may use, comma-separated in the order tried
    control_url: str | None = None  # the store the control link is on (or tries next)
    failovers: int | None = None  # times the node moved to another store (one store: its reconnects elsewhere)
    resent: int | None = None  # items in flight to a store that failed before its ack, sent again


@dataclass(frozen=True)
class NodeHealth:
    """A node's ``/health`` and heartbeat."""

    node: str | None = None
    uptime_s: float | None = None
    process: ProcessReading = field(default_factory=ProcessReading)
    soc: SocReading | None = None
    cameras: dict[str, CameraHealth] = field(default_factory=dict)
    spool: SpoolHealth | None = None
    store: StoreLinkHealth | None = None
    gpu: GpuSummary | None = None  # no node sends it yet; the console shows it where one does

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.node, "uptime_s": self.uptime_s, **flat_json(self.process),
            "soc": self.soc.to_json() if self.soc is not None else None,
            "cameras": {cam: health.to_json() for cam, health in self.cameras.items()},
            "spool": self.spool.to_json() if self.spool is not None else None,
            "store": flat_json(self.store) if self.store is not None else None,
        }
        if self.gpu is not None:
            out["gpu"] = flat_json(self.gpu)
        return out

    @classmethod
    def read(cls, r: FieldReader) -> NodeHealth:
        soc, spool, store, gpu = (r.optional_child(k) for k in ("soc", "spool", "store", "gpu"))
        return cls(
            node=r.string("node", None, nullable=True), uptime_s=r.number("uptime_s", None, nullable=True),
            process=read_flat(ProcessReading, r),
            soc=SocReading.read(soc) if soc is not None else None,
            cameras={cam: CameraHealth.read(c) for cam, c in r.keyed_children("cameras", {}).items()},
            spool=SpoolHealth.read(spool) if spool is not None else None,
            store=read_flat(StoreLinkHealth, store) if store is not None else None,
            gpu=read_flat(GpuSummary, gpu) if gpu is not None else None,
        )

    @classmethod
    def from_json(cls, data: object) -> NodeHealth:
        return read_message(data, "node health", cls.read)


def _strings(r: FieldReader, key: str) -> list[str]:
    value = r.data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise r.error(key, f"must be an array of strings, got {value!r}")
    return value
