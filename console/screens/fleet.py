"""Fleet: a row per node and per camera with status and health, the store's object detector, trends of the
selected row, the alert log."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, RichLog

from console.alerts import Alert
from console.fleet_model import FleetSnapshot
from console.screens.base import ConsoleScreen
from console.widgets.alert_line import alert_text
from console.widgets.detector_line import DetectorLine
from console.widgets.node_table import NodeTable
from console.widgets.spark_panel import SparkPanel


class FleetScreen(ConsoleScreen):
    SECTION = "Fleet"
    CSS_PATH = "fleet.tcss"
    AUTO_FOCUS = "#node-table"

    def __init__(self) -> None:
        super().__init__()
        self._logged: Alert | None = None  # the newest alert already in the log

    def compose_body(self) -> ComposeResult:
        with Vertical(id="fleet-body"):
            yield NodeTable(id="node-table")
            yield DetectorLine(id="detector-line")
            yield SparkPanel(id="sparks")
            log = RichLog(id="alert-log", max_lines=500, wrap=False, markup=False)
            log.border_title = "alerts"
            yield log

    def on_mount(self) -> None:
        super().on_mount()
        self.watch(self.app, "fleet", self._fleet_changed)
        self.watch(self.app, "alerts", self._alerts_changed)

    def _fleet_changed(self, snapshot: FleetSnapshot | None) -> None:
        if snapshot is None:
            self.query_one("#spark-title").update("waiting for the store…")  # type: ignore[attr-defined]
            return
        self.query_one(NodeTable).show(snapshot)
        self.query_one(DetectorLine).show(snapshot.detector)
        self._show_selected()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        snapshot = self.console.fleet
        panel = self.query_one(SparkPanel)
        if snapshot is None:
            return
        if not snapshot.nodes and not snapshot.cameras:
            panel.query_one("#spark-title").update(  # type: ignore[attr-defined]
                "no nodes yet: start one with `sht node --store ws://STORE:PORT …`")
            return
        key = self.query_one(NodeTable).selected_key or ""
        kind, _, name = key.partition(":")
        if kind == "node" and (node := snapshot.node(name)) is not None:
            panel.show_node(node)
        elif kind == "camera" and name in snapshot.cameras:
            panel.show_camera(snapshot.cameras[name])

    def _alerts_changed(self, alerts: tuple[Alert, ...]) -> None:
        log = self.query_one("#alert-log", RichLog)
        start = 0
        if self._logged is not None:
            start = next((i + 1 for i in range(len(alerts) - 1, -1, -1) if alerts[i] is self._logged), 0)
        for alert in alerts[start:]:
            log.write(alert_text(alert))
        if alerts:
            self._logged = alerts[-1]
