"""``?``: the keys and what each screen shows."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("f", "Fleet", "nodes and cameras: status, CPU, temperature, fps, bitrate, drops, spool, trends, alerts"),
    ("l", "Live", "a decoded picture per camera, 1–2 a second"),
    ("e", "Events", "timelines, events with label and snapshot; o filters by label; x exports the clip; p plays it"),
    ("s", "Search", "segments or events by camera and time; x exports the selected row; p plays it"),
    ("c", "Settings", "per-camera recording mode, motion sensitivity, retention; history of changes"),
    ("t", "Stores", "each store of the list: up, the one in use, the maintenance lease, the off-site copy's lag"),
    ("n", "Notifications", "webhooks and MQTT: per target sent, queued, retried, failed; the recent ones; o filters"),
    ("?", "Help", "this page"),
    ("q", "Quit", "also ctrl+q or ctrl+c"),
    ("ctrl+p", "Commands", "every action by name"),
    ("esc", "", "leave a text field (then the keys above work again)"),
)


def keys_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for row in KEYS:
        table.add_row(*row)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("SHT CCTV console — keys", id="help-title")
            yield Static(keys_table(), id="help-keys")
            yield Static("Times in Search take the CLI's forms: 2026-11-26T08:00, 10m ago, today 08:00, "
                         "yesterday 23:30, now.", id="help-times")
