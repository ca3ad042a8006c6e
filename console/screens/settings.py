"""Settings: each camera's runtime settings, changed through the store (``set_setting``), and their history.

The store validates every value, keeps the history and pushes the change to the
camera's node; a node that is not connected gets it when it reconnects.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from console.formatting import stamp
from console.screens.base import ConsoleScreen
from shared.query_client import StoreError

MODES = [("continuous", "continuous"), ("motion", "motion")]
HISTORY_ROWS = 100


def changed_by() -> str:
    try:
        return f"console:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "console"


class FormError(ValueError):
    pass


def read_form(mode: object, sensitivity: str, retention: str) -> dict[str, Any]:
    """The three settings as the store wants them; raises FormError naming the bad field."""
    try:
        value = float(sensitivity)
    except ValueError:
        raise FormError(f"motion sensitivity must be a number from 0 to 1, got {sensitivity!r}") from None
    days: int | None = None
    if retention.strip():
        try:
            days = int(retention)
        except ValueError:
            raise FormError(f"retention must be whole days (or empty for the store's default), "
                            f"got {retention!r}") from None
    return {"recording_mode": mode, "motion_sensitivity": value, "retention_days": days}


class SettingsScreen(ConsoleScreen):
    SECTION = "Settings"
    CSS_PATH = "settings.tcss"
    AUTO_FOCUS = "#settings-cameras"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("r", "reload", "Refresh"),
        Binding("escape", "leave_input", "Leave field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.settings: dict[str, dict[str, Any]] = {}
        self.cameras: list[str] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="settings-top"):
            yield DataTable(id="settings-cameras", cursor_type="row")
            with Vertical(id="settings-form"):
                yield Label("select a camera", id="form-title")
                with Horizontal(classes="form-row"):
                    yield Label("recording", classes="form-label")
                    yield Select(MODES, value="continuous", allow_blank=False, id="recording_mode", compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("sensitivity", classes="form-label")
                    yield Input("0.5", id="motion_sensitivity", compact=True, placeholder="0 … 1")
                with Horizontal(classes="form-row"):
                    yield Label("keep days", classes="form-label")
                    yield Input("", id="retention_days", compact=True, placeholder="store default")
                with Horizontal(classes="form-row"):
                    yield Button("Save", id="save", compact=True, variant="primary")
                yield Static("", id="settings-result")
        yield Label("history of changes, newest first", id="history-title")
        yield DataTable(id="settings-history", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#settings-cameras", DataTable).add_columns("camera", "mode", "sens.", "keep")
        self.query_one("#settings-history", DataTable).add_columns("when", "camera", "setting", "old → new", "by")

    def store_connected(self) -> None:
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Settings: save", "Save the selected camera's settings (ctrl+s)", self.action_save)
        yield SystemCommand("Settings: refresh", "Reload settings and history (key r)", self.action_reload)

    def action_leave_input(self) -> None:
        self.query_one("#settings-cameras", DataTable).focus()

    def action_reload(self) -> None:
        self._load()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        result = self.query_one("#settings-result", Static)
        try:
            answer = await self.store.call("settings")
            history = await self.store.call("settings_history", limit=HISTORY_ROWS)
        except StoreError as exc:
            result.update(Text(f"cannot load settings: {exc.message}", style="red"))
            return
        self.settings = answer["settings"]
        self._fill_cameras()
        self._fill_history(history["items"])

    def _fill_cameras(self) -> None:
        table = self.query_one("#settings-cameras", DataTable)
        selected = self._camera()
        table.clear()
        self.cameras = sorted(self.settings)
        for cam in self.cameras:
            s = self.settings[cam]
            table.add_row(cam, s["recording_mode"], f"{s['motion_sensitivity']:g}",
                          "default" if s["retention_days"] is None else f"{s['retention_days']}d", key=cam)
        if selected in self.cameras:
            table.move_cursor(row=self.cameras.index(selected))
        elif self.cameras:
            self._fill_form(self.cameras[0])

    def _fill_history(self, items: list[dict[str, Any]]) -> None:
        table = self.query_one("#settings-history", DataTable)
        table.clear()
        for h in items:
            table.add_row(stamp(h["changed_us"]), h["camera"], h["key"],
                          f"{json.dumps(h['old'])} → {json.dumps(h['new'])}", h["changed_by"])

    def _camera(self) -> str | None:
        row = self.query_one("#settings-cameras", DataTable).cursor_row
        return self.cameras[row] if self.cameras and 0 <= row < len(self.cameras) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "settings-cameras" and (cam := self._camera()) is not None:
            self._fill_form(cam)

    def _fill_form(self, camera: str) -> None:
        s = self.settings.get(camera, {})
        self.query_one("#form-title", Label).update(Text.assemble("settings of ", (camera, "bold")))
        self.query_one("#recording_mode", Select).value = s.get("recording_mode", "continuous")
        self.query_one("#motion_sensitivity", Input).value = f"{s.get('motion_sensitivity', 0.5):g}"
        days = s.get("retention_days")
        self.query_one("#retention_days", Input).value = "" if days is None else str(days)

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def action_save(self) -> None:
        self._save()

    @work(exclusive=True, group="save", exit_on_error=False)
    async def _save(self) -> None:
        result = self.query_one("#settings-result", Static)
        camera = self._camera()
        if camera is None:
            result.update(Text("no camera selected", style="red"))
            return
        try:
            wanted = read_form(self.query_one("#recording_mode", Select).value,
                               self.query_one("#motion_sensitivity", Input).value,
                               self.query_one("#retention_days", Input).value)
        except FormError as exc:
            result.update(Text(str(exc), style="red"))
            return
        current = self.settings.get(camera, {})
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if not changes:
            result.update(Text(f"{camera}: nothing changed", style="dim"))
            return
        lines: list[Text] = []
        try:
            for key, value in changes.items():
                r = await self.store.call("set_setting", camera=camera, key=key, value=value, by=changed_by())
                where = f"pushed to {r['node']}" if r["pushed"] else "its node gets it when it reconnects"
                lines.append(Text(f"{key} {json.dumps(r['old'])} → {json.dumps(r['new'])} ({where})"))
        except StoreError as exc:
            lines.append(Text(exc.message, style="red"))
        result.update(Text("\n").join(lines))
        self._load()
