"""The Stores screen's table: a row per store of the console's list."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from console.formatting import MISSING, nbytes, seconds
from console.store_health import REPLICA_TROUBLE, ReplicaView, StoreView

# Fits 80 columns; the Stores screen's detail line has the rest (where, what it took, the copy's last error).
COLUMNS = (("", "using"), ("store", "store"), ("status", "status"), ("index", "index"), ("segments", "segments"),
           ("lease", "lease"), ("off-site copy", "replica"))
LEASE_STYLE = {"holder": "bold green", "standby": "dim", "own index": ""}


def replica_text(r: ReplicaView | None) -> Text:
    """``off``, ``caught-up``, ``copying 12s 3.4 MB`` (behind), ``failing …`` in red, ``standby``."""
    if r is None:
        return Text(MISSING)
    if r.state in ("off", "standby"):
        return Text(r.state, style="dim")
    if r.state == "caught-up":
        return Text(r.state, style="green")
    behind = f" {seconds(r.seconds_behind)} {nbytes(r.bytes_behind)}" if r.seconds_behind else ""
    return Text(r.state + behind, style="bold red" if r.state in REPLICA_TROUBLE else "yellow")


def store_cells(v: StoreView, current: bool) -> list[str | Text]:
    if not v.up:
        status = Text("down", style="bold red")
    elif v.index_error:
        status = Text("no index", style="bold red")  # it answers, and refuses every segment
    else:
        status = Text(f"up {seconds(v.uptime_s)}", style="green")
    return [Text("▶", style="bold") if current else "", Text(v.url.split("://", 1)[-1], style="bold"), status,
            v.index or MISSING, v.segments or MISSING, Text(v.lease, style=LEASE_STYLE.get(v.lease, "")),
            replica_text(v.replica) if v.up else Text(MISSING)]


class StoreTable(DataTable[str | Text]):
    """Row keys are the stores' URLs, in the order the console was given them."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._keys: list[str] = []

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, views: Sequence[StoreView], current: Sequence[bool]) -> None:
        keys = [v.url for v in views]
        if keys != self._keys:
            self.clear()
            for v, now in zip(views, current, strict=True):
                self.add_row(*store_cells(v, now), key=v.url)
            self._keys = keys
            return
        for v, now in zip(views, current, strict=True):
            for (_, column), value in zip(COLUMNS, store_cells(v, now), strict=True):
                self.update_cell(v.url, column, value, update_width=True)

    @property
    def selected(self) -> str | None:
        return self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
