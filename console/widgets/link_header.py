"""The first line of every screen: where you are, and whether the store is there."""

from __future__ import annotations

import asyncio

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from console.link import LinkStatus


class LinkHeader(Widget):
    """``SHT CCTV · Fleet`` on the left, the store link on the right (connected / reconnecting…)."""

    status: reactive[LinkStatus | None] = reactive(None)

    def __init__(self, section: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.section = section

    def on_mount(self) -> None:
        self.watch(self.app, "link_status", self._link_changed)
        self.set_interval(1.0, self._tick)

    def _link_changed(self, status: LinkStatus) -> None:
        self.status = status
        self.set_class(status.state == "connected", "-connected")
        self.set_class(status.state == "reconnecting", "-lost")

    def _tick(self) -> None:
        if self.status is not None and self.status.state == "reconnecting":
            self.refresh()  # the countdown to the next attempt

    def link_text(self) -> Text:
        s = self.status
        if s is None:
            return Text("")
        where = s.url.split("://", 1)[-1]
        if s.state == "connected":
            return Text.assemble(("● ", "bold green"), f"store {where} connected")
        if s.state == "connecting":
            return Text.assemble(("○ ", "yellow"), f"connecting to store {where}…")
        wait = ""
        if s.retry_at is not None:
            left = s.retry_at - asyncio.get_running_loop().time()
            wait = f" in {left:.0f} s" if left >= 1 else " now"
        return Text.assemble(("✖ ", "bold red"), (f"store {where} lost", "bold"),
                             f" — reconnecting{wait}… (attempt {s.attempt})")

    def render(self) -> Table:
        grid = Table.grid(expand=True)
        grid.add_column(justify="left", no_wrap=True)
        grid.add_column(justify="right", no_wrap=True, overflow="ellipsis")
        grid.add_row(Text.assemble(("SHT CCTV", "bold"), " · ", self.section), self.link_text())
        return grid
