"""Notifications: what the store the console is on sent to its webhooks and MQTT broker, every 2 s while shown.

A row per target (``sht store --webhook URL``, the ``webhooks`` setting, ``--mqtt``) with its counts since the
store started (queued now, sent, retried, failed, dropped) and its last error; below, the recent notifications
newest first (the store's ``notifications``: what still waits in its outbox, queued or retrying, and the last 200
that ended: sent, failed, dropped). ``o`` shows one target's only, then the next, then all again.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Static

from console.formatting import clock, stamp
from console.notify_view import NotificationView, NotifyReport, TargetView, next_target, short_names, summary
from console.screens.base import ConsoleScreen
from console.widgets.notify_tables import NotificationTable, TargetTable
from shared.query_client import StoreError

POLL_S = 2.0
LIMIT = 100  # notifications asked for: more than the screen shows, fewer than the store keeps (200)


def target_detail(t: TargetView) -> Text:
    text = Text.assemble((t.name, "bold"), f" ({t.target})")
    if not t.configured:
        text.append(" · no longer configured", style="dim")
    if t.last_error:
        text.append("\nlast error").append(f" at {stamp(t.last_error_us)}" if t.last_error_us else "").append(": ")
        text.append(t.last_error, style="red")
    return text


def item_detail(n: NotificationView, names: dict[str, str]) -> Text:
    what = f"event {n.event_id} {n.type}" if n.event_id is not None else (n.what or f"{n.count} items")
    text = Text.assemble((n.state, "bold"), ": ", (what, "bold"), f", {n.camera}" if n.camera else "",
                         f" {n.label}" if n.label else "", ", alert" if n.alert else "",
                         f" → {names.get(n.target, n.target)}")
    if n.attempts:
        text.append(f" after {n.attempts} tr{'ies' if n.attempts != 1 else 'y'}" if n.state != "queued" else "")
    if n.due_us:
        text.append(f", next try at {clock(n.due_us)}")
    if n.error:
        text.append("\n" + ("last failed try: " if n.state in ("sent", "retrying") else "why: "))
        text.append(n.error, style="red")
    return text


class NotificationsScreen(ConsoleScreen):
    SECTION = "Notifications"
    CSS_PATH = "notifications.tcss"
    AUTO_FOCUS = "#notify-table"
    BINDINGS = [Binding("o", "next_target", "Target"), Binding("r", "refresh", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.report: NotifyReport | None = None
        self.target: str | None = None  # the list's filter; None: every target
        self.names: dict[str, str] = {}
        self._timer: Timer | None = None
        self._asking = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="notify-body"):
            yield Static("asking the store for its notifications…", id="notify-line")
            yield TargetTable(id="target-table")
            yield Static("", id="notify-filter")
            yield NotificationTable(id="notify-table")
            yield Static("", id="notify-detail")

    def on_mount(self) -> None:
        super().on_mount()
        self._timer = self.set_interval(POLL_S, self.action_refresh, pause=True)

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
        self.action_refresh()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()  # nobody looks: no requests

    def store_connected(self) -> None:
        self.action_refresh()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Notifications: refresh", "Ask the store for its notifications now (key r)",
                            self.action_refresh)
        yield SystemCommand("Notifications: next target", "List one target's notifications, then the next, then "
                            "all (key o)", self.action_next_target)

    def action_next_target(self) -> None:
        targets = self.report.targets if self.report else ()
        if not targets:
            self.notify("no webhook or MQTT target to choose", severity="warning")
            return
        self.target = next_target(self.target, targets)
        self.action_refresh(force=True)

    def action_refresh(self, force: bool = False) -> None:
        if force or not self._asking:  # a slow answer is waited for, not asked again every 2 s
            self._asking = True
            self.run_worker(self._ask(), group="notifications", exclusive=True, exit_on_error=False)

    async def _ask(self) -> None:
        params = {"limit": LIMIT} if self.target is None else {"limit": LIMIT, "target": self.target}
        try:
            answer = await self.store.call("notifications", **params)
        except StoreError as exc:
            if exc.code == "not-found" and self.target is not None:  # its webhook is gone (store restarted)
                self.target = None
            self._line(f"cannot read the store's notifications: {exc}", "warn")
            return
        finally:
            self._asking = False
        self._show(NotifyReport.from_api(answer))

    def _line(self, text: str, style: str) -> None:
        line = self.query_one("#notify-line", Static)
        line.update(text)
        for name in ("ok", "warn", "info"):
            line.set_class(style == name, f"-{name}")

    def _show(self, report: NotifyReport) -> None:
        every = report.targets if self.target is None or self.report is None else self.report.targets
        if self.target is None:
            self.report = report
        else:  # filtered: the table keeps every target (from the last unfiltered answer), updated where known
            fresh = {t.target: t for t in report.targets}
            self.report = NotifyReport(tuple(fresh.get(t.target, t) for t in every), report.items, report.kept)
        self.names = short_names(self.report.targets)
        self._line(*summary(self.report, self.store.url.split("://", 1)[-1]))
        self.query_one(TargetTable).show(self.report.targets, self.names)
        shown = "every target" if self.target is None else self.names.get(self.target, self.target)
        self.query_one("#notify-filter", Static).update(
            Text.assemble(("recent, newest first: ", "bold"), shown, (" · o: one target, then the next", "dim")))
        self.query_one(NotificationTable).show(report.items, self.names)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_descendant_focus(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#notify-detail", Static)
        targets = self.query_one(TargetTable)
        if targets.has_focus and self.report is not None:
            found = [t for t in self.report.targets if t.target == targets.selected]
            detail.update(target_detail(found[0]) if found else "")
            return
        selected = self.query_one(NotificationTable).selected
        full = {t.target: t.name for t in self.report.targets} if self.report is not None else {}
        detail.update(item_detail(selected, full) if selected else "no notifications yet")
