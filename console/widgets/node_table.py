"""The fleet table: a row per node, and under it a row per camera."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from console.fleet_model import CameraView, FleetSnapshot, NodeView, gpu_summary
from console.formatting import megabits, number, seconds, spark

STATUS_STYLE = {"up": "green", "degraded": "yellow", "down": "bold red"}
COLUMNS = (("name", "name"), ("status", "status"), ("CPU%", "cpu"), ("°C", "temp"), ("fps", "fps"),
           ("Mbit/s", "bitrate"), ("drop", "dropped"), ("spool", "spool"), ("lag", "lag"),
           ("GPU", "gpu"), ("trend", "trend"))


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def node_key(node: str) -> str:
    return f"node:{node}"


def camera_key(camera: str) -> str:
    return f"camera:{camera}"


def node_cells(n: NodeView) -> list[str | Text]:
    return [Text(n.node, style="bold"), status_text(n.status), number(n.cpu_percent), number(n.temperature_c),
            "", "", "", number(n.spool_segments, "d"), seconds(n.upload_lag_s) if n.spool_segments else "-",
            gpu_summary(n.gpu), spark(n.cpu_history)]


def camera_cells(c: CameraView) -> list[str | Text]:
    return [f"  {c.camera}", status_text(c.status), "", "", number(c.fps, ".1f"), megabits(c.bitrate_bps),
            number(c.frames_dropped, "d"), "", "", "", spark(c.fps_history)]


class NodeTable(DataTable[str | Text]):
    """Shows a ``FleetSnapshot``; row keys are ``node:ID`` and ``camera:ID``."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._keys: list[str] = []

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, snapshot: FleetSnapshot) -> None:
        rows: list[tuple[str, list[str | Text]]] = []
        for node in snapshot.nodes:
            rows.append((node_key(node.node), node_cells(node)))
            rows += [(camera_key(c.camera), camera_cells(c)) for c in node.cameras]
        for cam in snapshot.cameras.values():
            if cam.node is None or snapshot.node(cam.node) is None:
                rows.append((camera_key(cam.camera), camera_cells(cam)))
        keys = [k for k, _ in rows]
        if keys == self._keys:
            for key, cells in rows:
                for (_, column), value in zip(COLUMNS, cells, strict=True):
                    self.update_cell(key, column, value, update_width=True)  # "15.0" after a first "-"
            return
        selected = self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._keys = keys
        if selected in keys:
            self.move_cursor(row=keys.index(selected))

    @property
    def selected_key(self) -> str | None:
        return self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
