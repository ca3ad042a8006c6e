"""Settings: each camera's runtime settings, changed through the store (``set_setting``), and their history.

The form has one field per setting of shared/settings.py (a Select for choices,
an Input checked against the range for numbers, an Input of comma-separated
labels for a list of object labels), each with the store's
description. The store validates again, keeps the history and pushes the
change to the camera's node; a node that is not connected gets it when it reconnects.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from console.formatting import stamp
from console.screens.base import ConsoleScreen
from shared.query_client import StoreError
from shared.settings import SETTINGS, SettingError, SettingSpec

HISTORY_ROWS = 100


def changed_by() -> str:
    try:
        return f"console:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "console"


class FormError(ValueError):
    pass


def read_form(fields: Mapping[str, object]) -> dict[str, Any]:
    """Every setting as the store wants it, from each field's value (a Select's choice, an Input's text);
    raises FormError naming the first bad setting."""
    values: dict[str, Any] = {}
    try:
        for key, spec in SETTINGS.items():
            raw = fields.get(key)
            values[key] = spec.check(raw) if spec.kind == "choice" else spec.parse_text(str(raw or ""))
    except SettingError as exc:
        raise FormError(str(exc)) from None
    return values


def field_text(value: Any) -> str:
    """A value as an Input shows it: 0.5, 30, "person, car", or empty for null (or no labels)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_field(spec: SettingSpec) -> Select[str] | Input:
    if spec.choices is not None:
        return Select([(c, c) for c in spec.choices], value=spec.default, allow_blank=False, id=spec.key,
                      compact=True)
    placeholder = spec.hint() + (", empty: default" if spec.nullable else "")
    return Input(field_text(spec.default), id=spec.key, compact=True, placeholder=placeholder)


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
        self.descriptions: dict[str, str] = {}  # the store's, as it answered ``settings``
        self.cameras: list[str] = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="settings-top"):
            yield DataTable(id="settings-cameras", cursor_type="row")
            with VerticalScroll(id="settings-form"):
                yield Label("select a camera", id="form-title")
                for spec in SETTINGS.values():
                    with Horizontal(classes="setting-row"):
                        yield Label(spec.label, classes="form-label")
                        yield setting_field(spec)
                    yield Static(spec.description, id=f"about-{spec.key}", classes="form-about")
                with Horizontal(classes="form-row"):
                    yield Button("Save", id="save", compact=True, variant="primary")
                yield Static("", id="settings-result")
        yield Label("history of changes, newest first", id="history-title")
        yield DataTable(id="settings-history", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#settings-cameras", DataTable).add_columns("camera", *(s.label for s in SETTINGS.values()))
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
        self.descriptions = answer.get("descriptions") or {}
        for key, spec in SETTINGS.items():
            self.query_one(f"#about-{key}", Static).update(self.descriptions.get(key, spec.description))
        self._fill_cameras()
        self._fill_history(history["items"])

    def _fill_cameras(self) -> None:
        table = self.query_one("#settings-cameras", DataTable)
        selected = self._camera()
        table.clear()
        self.cameras = sorted(self.settings)
        for cam in self.cameras:
            s = self.settings[cam]
            table.add_row(cam, *(spec.format(s.get(key, spec.default)) for key, spec in SETTINGS.items()), key=cam)
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
        for key, spec in SETTINGS.items():
            value = s.get(key, spec.default)
            if spec.choices is not None:
                self.query_one(f"#{key}", Select).value = value
            else:
                self.query_one(f"#{key}", Input).value = field_text(value)

    def _field_value(self, spec: SettingSpec) -> object:
        if spec.choices is not None:
            return self.query_one(f"#{spec.key}", Select).value
        return self.query_one(f"#{spec.key}", Input).value

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
            wanted = read_form({key: self._field_value(spec) for key, spec in SETTINGS.items()})
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
