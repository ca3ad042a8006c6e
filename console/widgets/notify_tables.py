"""The Notifications screen's two tables: a row per target (its counts, its last error) and the recent
notifications (newest first). The last column, the error, gets the room the others leave (cut, the tail kept) so
both fit the screen's width (80 columns and up); the screen's detail line has the whole of it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widgets import DataTable

from console.formatting import MISSING, clock
from console.notify_view import NotificationView, TargetView, what_text

# Counts since the store started (queued: now); the help and docs/integrations.md say so.
TARGET_COLUMNS = (("target", "target"), ("queued", "queued"), ("sent", "delivered"), ("retry", "retried"),
                  ("fail", "failed"), ("drop", "dropped"), ("last error", "error"))
ITEM_COLUMNS = (("time", "time"), ("target", "target"), ("camera", "camera"), ("label", "label"),
                ("type", "type"), ("state", "state"), ("error", "error"))
STATE_STYLE = {"sent": "green", "queued": "yellow", "retrying": "bold yellow", "failed": "bold red",
               "dropped": "bold red"}
MIN_ERROR_CHARS = 10
SCROLLBAR = 2  # kept free for the vertical scrollbar a long list shows


def cut(text: str | None, chars: int) -> str:
    """An error for a cell: whole if it fits, else what follows its last ``: `` (``webhook … refused event 3:
    HTTP 400`` → ``HTTP 400``), cut to ``chars``."""
    if not text:
        return ""
    if len(text) > chars and ": " in text:
        text = text.rsplit(": ", 1)[1]
    return text if len(text) <= chars else text[: chars - 1] + "…"


def target_cells(t: TargetView, name: str) -> list[str | Text]:
    def count(n: int, trouble: bool = False) -> Text:
        return Text(str(n), style="bold red" if trouble and n else ("dim" if not n else ""))

    return [Text(name, style="bold" if t.configured else "dim"), count(t.queued), count(t.delivered),
            count(t.retried), count(t.failed, True), count(t.dropped, True)]


def item_cells(n: NotificationView, target: str) -> list[str | Text]:
    state = n.state + (f" ×{n.attempts}" if n.attempts > 1 else "")
    label = Text(n.label or MISSING, style="bold" if n.alert and n.label else "")
    return [clock(n.at_us), target, n.camera or MISSING, label, what_text(n),
            Text(state, style=STATE_STYLE.get(n.state, ""))]


class ErrorLastTable(DataTable[str | Text]):
    """A table whose rows are given without their last column, the error, which is cut to the room left."""

    COLUMNS: tuple[tuple[str, str], ...] = ()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._rows: list[tuple[str, list[str | Text], str | None, str]] = []  # key, cells, error, its style

    def on_mount(self) -> None:
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    def error_room(self, rows: Sequence[list[str | Text]]) -> int:
        padding = 2 * self.cell_padding
        used = sum(max([cell_len(label), *(cell_len(str(r[i])) for r in rows)]) + padding
                   for i, (label, _) in enumerate(self.COLUMNS[:-1]))
        return max(MIN_ERROR_CHARS, self.size.width - used - padding - SCROLLBAR) if self.size.width else 30

    def draw(self, rows: list[tuple[str, list[str | Text], str | None, str]]) -> None:
        """Rows (key, cells but the error, error, its style), redrawn whole; the highlighted row stays put."""
        self._rows = rows
        room = self.error_room([cells for _, cells, _, _ in rows])
        row = self.cursor_row
        self.clear()
        for key, cells, error, style in rows:
            self.add_row(*cells, Text(cut(error, room), style=style), key=key)
        if rows:
            self.move_cursor(row=min(max(row, 0), len(rows) - 1), animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if self._rows:
            self.draw(self._rows)


class TargetTable(ErrorLastTable):
    """Row keys are the targets (``mqtt``, ``webhook:<hash>``), as the store orders them."""

    COLUMNS = TARGET_COLUMNS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.targets: tuple[TargetView, ...] = ()

    def show(self, targets: Sequence[TargetView], names: dict[str, str]) -> None:
        shown = [(t.target, target_cells(t, names[t.target]), t.last_error, "red") for t in targets]
        if tuple(targets) != self.targets or shown != self._rows:
            self.targets = tuple(targets)
            self.draw(shown)

    @property
    def selected(self) -> str | None:
        return self.targets[self.cursor_row].target if 0 <= self.cursor_row < len(self.targets) else None


class NotificationTable(ErrorLastTable):
    """The recent notifications; redrawn only when they changed."""

    COLUMNS = ITEM_COLUMNS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: tuple[NotificationView, ...] = ()
        self._names: dict[str, str] = {}

    def show(self, items: Sequence[NotificationView], names: dict[str, str]) -> None:
        if tuple(items) == self.items and names == self._names:
            return
        self.items, self._names = tuple(items), dict(names)
        self.draw([(str(i), item_cells(n, names.get(n.target, n.target)), n.error,
                    "red" if n.state in ("failed", "dropped", "retrying") else "dim") for i, n in enumerate(items)])

    @property
    def selected(self) -> NotificationView | None:
        return self.items[self.cursor_row] if 0 <= self.cursor_row < len(self.items) else None
