"""The fleet as the console sees it: typed views of the store's ``fleet`` answer, with a status per row.

Pure data, no Textual: ``FleetSnapshot.from_api`` takes one ``fleet`` reply
(``shared.protocol.fleet.FleetReport``) and decides, per node and per camera, whether it is *up*,
*degraded* or *down*, and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.protocol.detector_health import DetectorHealth
from shared.protocol.fleet import FleetCamera, FleetReport, HealthSample, NodeSummary
from shared.protocol.health import CameraHealth, GpuSummary, NodeHealth, SpoolHealth

Status = Literal["up", "degraded", "down"]

SPOOL_BACKLOG_SEGMENTS = 3  # this many segments waiting for the store means uploads are falling behind
SLOW_FPS_RATIO = 0.8  # a camera below this share of its configured frame rate is degraded
RECENT_SAMPLES = 30  # one minute of heartbeats: drops in it make a camera degraded


def per_interval(cumulative: Sequence[float | None]) -> list[float]:
    """Increments of a counter between samples (a restart's reset counts as zero)."""
    out: list[float] = []
    previous: float | None = None
    for value in cumulative:
        if value is not None and previous is not None:
            out.append(max(0.0, value - previous))
        if value is not None:
            previous = value
    return out


@dataclass(frozen=True)
class CameraView:
    camera: str
    node: str | None
    status: Status
    reason: str
    state: str  # the node's own word for the camera: starting, up, stopped, down, or unknown
    fps: float | None = None
    configured_fps: float | None = None
    bitrate_bps: float | None = None
    frames_dropped: int | None = None
    width: int | None = None
    height: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    fps_history: tuple[float, ...] = ()
    bitrate_history: tuple[float, ...] = ()
    drops_history: tuple[float, ...] = ()  # frames dropped per heartbeat interval


@dataclass(frozen=True)
class NodeView:
    node: str
    status: Status
    reason: str
    state: str  # the store's word: up, down or unknown
    url: str | None
    last_seen_us: int | None
    cpu_percent: float | None = None
    temperature_c: float | None = None
    gpu: GpuSummary | None = None  # what the node reports about its GPU/VideoCore, if anything
    spool_segments: int | None = None
    spool_bytes: int | None = None
    spool_limit_bytes: int | None = None
    upload_lag_s: float | None = None  # age of the oldest segment still waiting in the spool
    store_link: str | None = None
    cameras: tuple[CameraView, ...] = ()
    cpu_history: tuple[float, ...] = ()
    temperature_history: tuple[float, ...] = ()
    spool_history: tuple[float, ...] = ()


@dataclass(frozen=True)
class FleetSnapshot:
    nodes: tuple[NodeView, ...]
    cameras: Mapping[str, CameraView]  # every camera the store knows, including those no node announces now
    now_us: int
    detector: DetectorHealth | None = None  # the store's object detector (None: a store that does not report it)

    @classmethod
    def from_api(cls, report: FleetReport) -> FleetSnapshot:
        nodes = tuple(_node_view(n, report.cameras, report.now_us) for n in report.nodes)
        cameras: dict[str, CameraView] = {c.camera: c for n in nodes for c in n.cameras}
        for cam, info in sorted(report.cameras.items()):
            if cam not in cameras:
                cameras[cam] = CameraView(cam, info.node, "down", "no node announces this camera now", "unknown",
                                          settings=info.settings)
        return cls(nodes, dict(sorted(cameras.items())), report.now_us, report.detector)

    def camera_ids(self) -> list[str]:
        return list(self.cameras)

    def node(self, node_id: str) -> NodeView | None:
        return next((n for n in self.nodes if n.node == node_id), None)

    def node_url_of(self, camera: str) -> str | None:
        view = self.cameras.get(camera)
        node = self.node(view.node) if view is not None and view.node else None
        return node.url if node is not None else None


def _node_view(data: NodeSummary, store_cameras: Mapping[str, FleetCamera], now_us: int) -> NodeView:
    health = data.health or NodeHealth()
    spool = health.spool or SpoolHealth()
    oldest, segments = spool.oldest_start_us, spool.segments
    lag = (now_us - oldest) / 1e6 if oldest is not None and segments and now_us else None
    link = health.store.link if health.store is not None else None
    node_down = data.state != "up"
    camera_ids = list(data.cameras) or sorted(health.cameras)
    cameras = tuple(
        _camera_view(cam, data.node, node_down, health.cameras.get(cam) or CameraHealth(), data.history,
                     store_cameras[cam].settings if cam in store_cameras else {})
        for cam in camera_ids
    )
    if node_down:
        status: Status = "down"
        reason = "never heard from since the store started" if data.state == "unknown" else "missed its heartbeats"
    else:
        troubles = [f"{c.camera} {c.status}" for c in cameras if c.status != "up"]
        if link not in (None, "connected"):
            troubles.append(f"upload link {link}")
        if segments is not None and segments >= SPOOL_BACKLOG_SEGMENTS:
            troubles.append(f"{segments} segments waiting to upload")
        status = "degraded" if troubles else "up"
        reason = "; ".join(troubles) or "all well"
    return NodeView(
        node=data.node, status=status, reason=reason, state=data.state, url=data.url,
        last_seen_us=data.last_seen_us,
        cpu_percent=_float(health.process.cpu_percent), temperature_c=_float(health.process.temperature_c),
        gpu=health.gpu,
        spool_segments=segments, spool_bytes=spool.bytes, spool_limit_bytes=spool.limit_bytes, upload_lag_s=lag,
        store_link=link, cameras=cameras,
        cpu_history=_present(h.cpu_percent for h in data.history),
        temperature_history=_present(h.temperature_c for h in data.history),
        spool_history=_present(h.spool_segments for h in data.history),
    )


def _float(value: float | None) -> float | None:
    """Numbers as floats: the wire keeps 15 and 15.0 apart, the views and sparklines need not."""
    return float(value) if value is not None else None


def _present(values: Iterable[float | None]) -> tuple[float, ...]:
    return tuple(float(v) for v in values if v is not None)


def _camera_series(history: Sequence[HealthSample], camera: str, key: str) -> list[float | None]:
    return [_float(getattr(h.cameras[camera], key)) if camera in h.cameras else None for h in history]


def _camera_view(camera: str, node: str, node_down: bool, health: CameraHealth,
                 history: Sequence[HealthSample], settings: Mapping[str, Any]) -> CameraView:
    state = health.state or "unknown"
    fps, configured = _float(health.fps), _float(health.configured_fps)
    drops = per_interval(_camera_series(history, camera, "frames_dropped"))
    recent_drops = sum(drops[-RECENT_SAMPLES:])
    if node_down:
        status: Status = "down"
        reason = f"node {node} is down"
    elif state != "up":
        status = "down"
        # A node's error names its camera already ("camera cam0: ..."): said once here.
        error = (health.error or "").removeprefix(f"camera {camera}: ")
        reason = f"camera {state}" + (f": {error}" if error else "")
    elif recent_drops > 0:
        status, reason = "degraded", f"dropped {recent_drops:.0f} frames in the last minute"
    elif fps is not None and configured and fps < SLOW_FPS_RATIO * configured:
        status, reason = "degraded", f"{fps:.1f} fps of {configured:.0f} configured"
    else:
        status, reason = "up", "recording"
    return CameraView(
        camera=camera, node=node, status=status, reason=reason, state=state, fps=fps, configured_fps=configured,
        bitrate_bps=_float(health.bitrate_bps), frames_dropped=health.frames_dropped,
        width=health.width, height=health.height,
        settings=settings or health.settings or {},
        fps_history=_present(_camera_series(history, camera, "fps")),
        bitrate_history=_present(_camera_series(history, camera, "bitrate_bps")),
        drops_history=tuple(drops),
    )


DETECTOR_TROUBLE_STATES = ("failed", "restarting")


def detector_troubled(detector: DetectorHealth) -> bool:
    """The detector needs the operator's eye: it failed, is restarting, or reports an error."""
    return detector.state in DETECTOR_TROUBLE_STATES or bool(detector.last_error)


def gpu_summary(gpu: GpuSummary | None) -> str:
    """The GPU/VideoCore fields a node reports, in a few characters; ``n/a`` when it reports none.

    No node reports these yet (a Pi's VideoCore via vcgencmd is on the plan).
    """
    if gpu is None:
        return "n/a"
    parts = []
    if gpu.percent is not None:
        parts.append(f"{gpu.percent:.0f}%")
    if gpu.temperature_c is not None:
        parts.append(f"{gpu.temperature_c:.0f}°")
    if gpu.memory_mb is not None:
        parts.append(f"{gpu.memory_mb:.0f}M")
    if gpu.throttled:
        parts.append("thr")
    return " ".join(parts) or "n/a"
