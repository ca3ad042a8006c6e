"""Alerts: what changed between two fleet snapshots that an operator should hear about.

Raised when a node goes down (and when it comes back), when a node's spool keeps
growing (uploads are falling behind), when its spool nears its size limit, when
a camera drops frames, and when the store's object detector fails, restarts or
recovers. A full store disk is not watched: the store's ``/health`` and ``fleet``
answers carry no disk figures yet, so there is nothing to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from console.fleet_model import DETECTOR_TROUBLE_STATES, SPOOL_BACKLOG_SEGMENTS, CameraView, FleetSnapshot, NodeView
from console.formatting import seconds
from shared.protocol.detector_health import DetectorHealth

Level = Literal["info", "warning", "error"]

DROP_ALERT_COOLDOWN_US = 30_000_000  # at most one drop alert per camera in this long
SPOOL_NEAR_LIMIT = 0.8  # warn when the spool holds this share of its size limit
SPOOL_CLEAR_LIMIT = 0.7  # and again only after it fell below this share
MAX_ALERTS = 200


@dataclass(frozen=True)
class Alert:
    at_us: int
    level: Level
    subject: str  # the node, camera or "store" it is about
    text: str


class AlertTracker:
    """Compares each snapshot with the one before it; remembers what it already said."""

    def __init__(self) -> None:
        self._node_status: dict[str, str] = {}
        self._drops: dict[str, int] = {}
        self._last_drop_alert: dict[str, int] = {}
        self._pending_drops: dict[str, int] = {}
        self._spool_alerted: dict[str, int] = {}
        self._spool_full: set[str] = set()
        self._detector: DetectorHealth | None = None
        self._stalled: set[str] = set()  # cameras last seen stalled (a Pi camera that stopped giving frames)

    def update(self, snapshot: FleetSnapshot) -> list[Alert]:
        alerts: list[Alert] = []
        for node in snapshot.nodes:
            alerts += self._node(node, snapshot.now_us)
            for cam in node.cameras:
                alerts += self._stall_alerts(cam, node.status, snapshot.now_us)
                if cam.frames_dropped is None or node.status == "down":
                    continue
                before = self._drops.get(cam.camera)
                self._drops[cam.camera] = cam.frames_dropped
                if before is None or cam.frames_dropped <= before:
                    continue
                self._pending_drops[cam.camera] = self._pending_drops.get(cam.camera, 0) + cam.frames_dropped - before
                last = self._last_drop_alert.get(cam.camera)
                if last is None or snapshot.now_us - last >= DROP_ALERT_COOLDOWN_US:
                    n = self._pending_drops.pop(cam.camera)
                    self._last_drop_alert[cam.camera] = snapshot.now_us
                    alerts.append(Alert(snapshot.now_us, "warning", cam.camera,
                                        f"{cam.camera} dropped {n} frame{'s' if n != 1 else ''} "
                                        f"({cam.frames_dropped} since its node started)"))
        if snapshot.detector is not None:
            alerts += self._detector_alerts(snapshot.detector, snapshot.now_us)
        return alerts

    def _stall_alerts(self, cam: CameraView, node_status: str, now_us: int) -> list[Alert]:
        if cam.state == "stalled" and node_status != "down" and cam.camera not in self._stalled:
            self._stalled.add(cam.camera)
            return [Alert(now_us, "error", cam.camera, f"{cam.camera}: {cam.reason}; the node reopens it")]
        if cam.state == "up" and cam.camera in self._stalled:
            self._stalled.discard(cam.camera)
            return [Alert(now_us, "info", cam.camera, f"{cam.camera} gives frames again")]
        return []

    def _detector_alerts(self, now: DetectorHealth, now_us: int) -> list[Alert]:
        before, self._detector = self._detector, now
        was_troubled = before is not None and before.state in DETECTOR_TROUBLE_STATES
        why = f": {now.last_error}" if now.last_error else ""
        if now.state in DETECTOR_TROUBLE_STATES and (before is None or before.state != now.state):
            return [Alert(now_us, "error", "detector", f"object detector {now.state}{why}")]
        if was_troubled and now.state not in DETECTOR_TROUBLE_STATES:
            return [Alert(now_us, "info", "detector", f"object detector {now.state or 'back'}")]
        restarts, restarts_before = now.restarts or 0, (before.restarts or 0) if before is not None else 0
        if before is not None and restarts > restarts_before:
            # A hang or crash the detector came back from between two polls: still worth a line.
            return [Alert(now_us, "warning", "detector", f"object detector restarted ({restarts} since the store "
                                                         f"started){why}")]
        return []

    def _node(self, node: NodeView, now_us: int) -> list[Alert]:
        alerts: list[Alert] = []
        before = self._node_status.get(node.node)
        self._node_status[node.node] = node.status
        if node.status == "down" and before != "down":
            alerts.append(Alert(now_us, "error", node.node, f"{node.node} is down: {node.reason}"))
        elif node.status != "down" and before == "down":
            alerts.append(Alert(now_us, "info", node.node, f"{node.node} is back up"))
        segments = node.spool_segments or 0
        alerted = self._spool_alerted.get(node.node, 0)
        if segments == 0:
            self._spool_alerted.pop(node.node, None)
        elif segments >= SPOOL_BACKLOG_SEGMENTS and segments > alerted and node.status != "down":
            # Once per doubling: 3, 6, 12, ... waiting segments.
            self._spool_alerted[node.node] = segments * 2 - 1
            alerts.append(Alert(now_us, "warning", node.node,
                                f"{node.node} spool growing: {segments} segments waiting to upload, "
                                f"oldest {seconds(node.upload_lag_s)} old"))
        if node.spool_bytes is not None and node.spool_limit_bytes:
            share = node.spool_bytes / node.spool_limit_bytes
            if share >= SPOOL_NEAR_LIMIT and node.node not in self._spool_full:
                self._spool_full.add(node.node)
                alerts.append(Alert(now_us, "error", node.node,
                                    f"{node.node} spool at {share:.0%} of its limit: the oldest footage "
                                    "there will be lost if uploads do not catch up"))
            elif share < SPOOL_CLEAR_LIMIT:
                self._spool_full.discard(node.node)
        return alerts
