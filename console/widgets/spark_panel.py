"""Trends of the selected fleet row: three labelled Sparklines of the last few minutes."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from console.fleet_model import CameraView, NodeView


def _range(values: Sequence[float], spec: str) -> str:
    if not values:
        return "no samples yet"
    return f"now {format(values[-1], spec)}  min {format(min(values), spec)}  max {format(max(values), spec)}"


class SparkPanel(Vertical):
    """Title line, then rows of ``label | sparkline | now/min/max``."""

    ROWS = 3

    def compose(self) -> ComposeResult:
        yield Label("", id="spark-title")
        for i in range(self.ROWS):
            with Horizontal(classes="spark-row"):
                yield Label("", id=f"spark-label-{i}", classes="spark-label")
                yield Sparkline([], id=f"spark-{i}")
                yield Label("", id=f"spark-range-{i}", classes="spark-range")

    def _row(self, i: int, label: str, values: Sequence[float], spec: str) -> None:
        self.query_one(f"#spark-label-{i}", Label).update(label)
        self.query_one(f"#spark-{i}", Sparkline).data = list(values)
        self.query_one(f"#spark-range-{i}", Label).update(_range(values, spec))

    def show_node(self, node: NodeView) -> None:
        samples = len(node.cpu_history)
        self.query_one("#spark-title", Label).update(
            f"{node.node}: {node.reason} · last {samples * 2 // 60} min {samples * 2 % 60} s of heartbeats")
        self._row(0, "CPU %", node.cpu_history, ".0f")
        self._row(1, "temp °C", node.temperature_history, ".1f")
        self._row(2, "spool", node.spool_history, ".0f")

    def show_camera(self, camera: CameraView) -> None:
        size = f"{camera.width}x{camera.height} · " if camera.width and camera.height else ""
        self.query_one("#spark-title", Label).update(f"{camera.camera} on {camera.node or '?'}: {size}"
                                                     f"{camera.reason}")
        self._row(0, "fps", camera.fps_history, ".1f")
        self._row(1, "Mbit/s", [b / 1e6 for b in camera.bitrate_history], ".2f")
        self._row(2, "dropped", camera.drops_history, ".0f")
