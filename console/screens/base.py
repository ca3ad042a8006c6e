"""What every console screen shares: the link header, the alert line, the key footer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult, SystemCommand
from textual.screen import Screen
from textual.widgets import Footer

from console.link import LinkStatus, StoreLink
from console.widgets.alert_line import AlertLine
from console.widgets.link_header import LinkHeader

if TYPE_CHECKING:
    from console.app import ConsoleApp


class ConsoleScreen(Screen[None]):
    SECTION: ClassVar[str] = ""

    def compose(self) -> ComposeResult:
        yield LinkHeader(self.SECTION, id="link-header")
        yield AlertLine(id="alert-line")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def console(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)

    @property
    def store(self) -> StoreLink:
        return self.console.link

    def on_mount(self) -> None:
        self.watch(self.app, "link_status", self._link_changed, init=False)

    def _link_changed(self, status: LinkStatus) -> None:
        if status.state == "connected" and self.is_current:
            self.store_connected()

    def store_connected(self) -> None:
        """The store is (back) there: screens that show store data reload it."""

    def palette_commands(self) -> Iterable[SystemCommand]:
        """This screen's actions, for the command palette."""
        return ()
