"""The fleet as the console sees it: typed views of the store's ``fleet`` answer, with a status per row.

Pure data, no Textual: ``FleetSnapshot.from_api`` reads one ``fleet`` reply
(docs/protocol.md) and decides, per node and per camera, whether it is *up*,
*degraded* or *down*, and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["up", "degraded", "down"]

SPOOL_BACKLOG_SEGMENTS = 3  # this many segments waiting for the store means uploads are falling behind
SLOW_FPS_RATIO = 0.8  # a camera below this share of its configured frame rate is degraded
RECENT_SAMPLES = 30  # one minute of heartbeats: drops in it make a camera degraded


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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
    gpu: Mapping[str, Any] | None = None  # what the node reports about its GPU/VideoCore, if anything
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

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> FleetSnapshot:
        now = _int(data.get("now_us")) or 0
        store_cameras = _dict(data.get("cameras"))
        nodes = tuple(_node_view(n, store_cameras, now) for n in data.get("nodes") or [] if isinstance(n, dict))
        cameras: dict[str, CameraView] = {c.camera: c for n in nodes for c in n.cameras}
        for cam, info in sorted(store_cameras.items()):
            if cam not in cameras:
                node = _dict(info).get("node")
                cameras[cam] = CameraView(cam, node, "down", "no node announces this camera now", "unknown",
                                          settings=_dict(_dict(info).get("settings")))
        return cls(nodes, dict(sorted(cameras.items())), now)

    def camera_ids(self) -> list[str]:
        return list(self.cameras)

    def node(self, node_id: str) -> NodeView | None:
        return next((n for n in self.nodes if n.node == node_id), None)

    def node_url_of(self, camera: str) -> str | None:
        view = self.cameras.get(camera)
        node = self.node(view.node) if view is not None and view.node else None
        return node.url if node is not None else None


def _node_view(data: dict[str, Any], store_cameras: Mapping[str, Any], now_us: int) -> NodeView:
    node_id = str(data.get("node", "?"))
    state = str(data.get("state", "unknown"))
    health = _dict(data.get("health"))
    history = [h for h in data.get("history") or [] if isinstance(h, dict)]
    spool = _dict(health.get("spool"))
    oldest = _int(spool.get("oldest_start_us"))
    segments = _int(spool.get("segments"))
    lag = (now_us - oldest) / 1e6 if oldest is not None and segments and now_us else None
    link = _dict(health.get("store")).get("link")
    node_down = state != "up"
    health_cams = _dict(health.get("cameras"))
    camera_ids = [str(c) for c in data.get("cameras") or []] or sorted(health_cams)
    cameras = tuple(
        _camera_view(cam, node_id, node_down, _dict(health_cams.get(cam)), history,
                     _dict(_dict(store_cameras.get(cam)).get("settings")))
        for cam in camera_ids
    )
    if node_down:
        status: Status = "down"
        reason = "never heard from since the store started" if state == "unknown" else "missed its heartbeats"
    else:
        troubles = [f"{c.camera} {c.status}" for c in cameras if c.status != "up"]
        if link not in (None, "connected"):
            troubles.append(f"upload link {link}")
        if segments is not None and segments >= SPOOL_BACKLOG_SEGMENTS:
            troubles.append(f"{segments} segments waiting to upload")
        status = "degraded" if troubles else "up"
        reason = "; ".join(troubles) or "all well"
    return NodeView(
        node=node_id, status=status, reason=reason, state=state, url=data.get("url"),
        last_seen_us=_int(data.get("last_seen_us")),
        cpu_percent=_float(health.get("cpu_percent")), temperature_c=_float(health.get("temperature_c")),
        gpu=health.get("gpu") if isinstance(health.get("gpu"), dict) else None,
        spool_segments=segments, spool_bytes=_int(spool.get("bytes")),
        spool_limit_bytes=_int(spool.get("limit_bytes")), upload_lag_s=lag,
        store_link=link if isinstance(link, str) else None, cameras=cameras,
        cpu_history=_series(history, "cpu_percent"), temperature_history=_series(history, "temperature_c"),
        spool_history=_series(history, "spool_segments"),
    )


def _series(history: list[dict[str, Any]], key: str) -> tuple[float, ...]:
    return tuple(v for v in (_float(h.get(key)) for h in history) if v is not None)


def _camera_series(history: list[dict[str, Any]], camera: str, key: str) -> list[float | None]:
    return [_float(_dict(_dict(h.get("cameras")).get(camera)).get(key)) for h in history]


def _camera_view(camera: str, node: str, node_down: bool, health: dict[str, Any],
                 history: list[dict[str, Any]], settings: dict[str, Any]) -> CameraView:
    state = str(health.get("state", "unknown"))
    fps, configured = _float(health.get("fps")), _float(health.get("configured_fps"))
    drops = per_interval(_camera_series(history, camera, "frames_dropped"))
    recent_drops = sum(drops[-RECENT_SAMPLES:])
    if node_down:
        status: Status = "down"
        reason = f"node {node} is down"
    elif state != "up":
        status = "down"
        error = health.get("error")
        reason = f"camera {state}" + (f": {error}" if error else "")
    elif recent_drops > 0:
        status, reason = "degraded", f"dropped {recent_drops:.0f} frames in the last minute"
    elif fps is not None and configured and fps < SLOW_FPS_RATIO * configured:
        status, reason = "degraded", f"{fps:.1f} fps of {configured:.0f} configured"
    else:
        status, reason = "up", "recording"
    return CameraView(
        camera=camera, node=node, status=status, reason=reason, state=state, fps=fps, configured_fps=configured,
        bitrate_bps=_float(health.get("bitrate_bps")), frames_dropped=_int(health.get("frames_dropped")),
        width=_int(health.get("width")), height=_int(health.get("height")),
        settings=settings or _dict(health.get("settings")),
        fps_history=tuple(v for v in _camera_series(history, camera, "fps") if v is not None),
        bitrate_history=tuple(v for v in _camera_series(history, camera, "bitrate_bps") if v is not None),
        drops_history=tuple(drops),
    )


def gpu_summary(gpu: Mapping[str, Any] | None) -> str:
    """The GPU/VideoCore fields a node reports, in a few characters; ``n/a`` when it reports none.

    No node reports these yet (a Pi's VideoCore via vcgencmd is on the plan); the keys
    read here are ``percent``, ``temperature_c``, ``memory_mb`` and ``throttled``.
    """
    if not gpu:
        return "n/a"
    parts = []
    if (pct := _float(gpu.get("percent"))) is not None:
        parts.append(f"{pct:.0f}%")
    if (temp := _float(gpu.get("temperature_c"))) is not None:
        parts.append(f"{temp:.0f}°")
    if (mem := _float(gpu.get("memory_mb"))) is not None:
        parts.append(f"{mem:.0f}M")
    if gpu.get("throttled"):
        parts.append("thr")
    return " ".join(parts) or "n/a"
