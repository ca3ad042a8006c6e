"""Stores: each store of the console's list (``--store A,B``) as its ``/health`` says, every 2 s while shown: up
or not, which one the console's link is on, its index and segment storage, which one holds the maintenance
lease, and how far its off-site copy is behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Static

from console.link import LinkStatus
from console.screens.base import ConsoleScreen
from console.store_health import StoreView, is_current, lease_line
from console.widgets.store_table import StoreTable, replica_text
from shared.store_list import parse_store_list

POLL_S = 2.0


def connected_to(status: LinkStatus) -> str | None:
    return status.url if status.state == "connected" else None


def detail_text(v: StoreView, current: bool) -> Text:
    """The selected store in a few lines: what the table has no room for."""
    text = Text.assemble((v.url, "bold"), " — the console's link is on this store" if current else "")
    if not v.up:
        return text.append("\nnot answering: ", style="bold red").append(v.error or "?", style="red")
    lease = {"holder": "holds the maintenance lease: retention, timeline summaries and the off-site copy run here",
             "standby": "waits for the maintenance lease (another store of the index holds it)",
             "own index": "alone on its SQLite index: it does its own maintenance"}.get(v.lease, "")
    text.append(f"\nindex {v.index or '?'} · {lease}")
    if v.index_error:
        text.append("\ncannot read its index (it refuses segments meanwhile): ", style="bold red")
        text.append(v.index_error, style="red")
    text.append(f"\nsegments in {v.segments_where or v.segments or '?'}")
    text.append(f" · {v.stored} taken since it started" if v.stored is not None else "")
    text.append(f" · {v.nodes} node{'s' if v.nodes != 1 else ''} known" if v.nodes is not None else "")
    r = v.replica
    if r is not None and r.state != "off":
        text.append("\noff-site copy").append(f" to {r.url}" if r.url else "").append(": ")
        text.append_text(replica_text(r))
        if r.seconds_behind:
            text.append(" behind")
        if r.objects_pending:
            text.append(f" · {r.objects_pending} objects pending")
        if r.last_error:
            text.append("\nlast error: ", style="bold red").append(r.last_error, style="red")
    return text


class StoresScreen(ConsoleScreen):
    SECTION = "Stores"
    CSS_PATH = "stores.tcss"
    AUTO_FOCUS = "#store-table"
    BINDINGS = [Binding("r", "refresh", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.views: list[StoreView] = []
        self._timer: Timer | None = None
        self._asking = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="stores-body"):
            yield Static("asking each store for its /health…", id="lease-line")
            yield StoreTable(id="store-table")
            yield Static("", id="store-detail")

    def on_mount(self) -> None:
        super().on_mount()
        self.watch(self.app, "link_status", lambda _: self._show(), init=False)
        self._timer = self.set_interval(POLL_S, self.action_refresh, pause=True)

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
        self.action_refresh()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()  # nobody looks: no requests to the stores

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Stores: refresh", "Ask every store for its /health now (key r)", self.action_refresh)

    def action_refresh(self) -> None:
        if not self._asking:  # a store that takes its time (up to 3 s) is waited for, not asked twice
            self._asking = True
            self.run_worker(self._ask(), group="store-health", exit_on_error=False)

    async def _ask(self) -> None:
        try:
            ask = self.console.store_health
            self.views = list(await asyncio.gather(*(asyncio.to_thread(ask, url)
                                                     for url in parse_store_list(self.console.store_url))))
        finally:
            self._asking = False
        self._show()

    def _current(self) -> list[bool]:
        now = connected_to(self.console.link_status)
        return [is_current(v, now) for v in self.views]

    def _show(self) -> None:
        if not self.views:
            return
        line, style = lease_line(self.views)
        lease = self.query_one("#lease-line", Static)
        lease.update(line)
        for name in ("ok", "warn", "info"):
            lease.set_class(style == name, f"-{name}")
        self.query_one(StoreTable).show(self.views, self._current())
        self._show_selected()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        selected = self.query_one(StoreTable).selected
        for view, current in zip(self.views, self._current(), strict=True):
            if view.url == selected:
                self.query_one("#store-detail", Static).update(detail_text(view, current))
