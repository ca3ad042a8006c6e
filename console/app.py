"""``sht console``: the operator's console, a Textual app over the store's query API.

The app owns the one store connection (``console.link.StoreLink``, run as a
worker). Its messages come up to the app, which turns them into three reactive
attributes that the screens and widgets watch: ``link_status`` (the header),
``fleet`` (the latest ``FleetSnapshot``) and ``alerts``. Screens ask the store
for anything else through ``app.link.call`` from their own workers.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable
from functools import partial
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

import console.widgets.picture  # noqa: F401  (textual-image probes the terminal on import: before the app runs)
from console.alerts import MAX_ALERTS, Alert, AlertTracker
from console.fleet_model import FleetSnapshot
from console.link import FleetUpdated, LinkStatus, StoreConnected, StoreLink, StoreLost
from console.screens.base import ConsoleScreen
from console.screens.events import EventsScreen
from console.screens.fleet import FleetScreen
from console.screens.help import HelpScreen
from console.screens.live import LiveScreen
from console.screens.notifications import NotificationsScreen
from console.screens.search import SearchScreen
from console.screens.settings import SettingsScreen
from console.screens.stores import StoresScreen
from console.store_health import HealthSource, StoreView
from shared.clock import now_us

SECTIONS = (
    ("fleet", "f", "Fleet", "nodes and cameras: health, trends and alerts"),
    ("live", "l", "Live", "a decoded picture per camera"),
    ("events", "e", "Events", "timelines and events, thumbnails, clip export"),
    ("search", "s", "Search", "segments and events by camera and time"),
    ("settings", "c", "Settings", "per-camera runtime settings and their history"),
)
# Not in the footer (the sections above fill it at 80 columns): their keys, the help and the palette.
STORES_SECTION = ("stores", "t", "Stores", "each store: up or not, the link, the maintenance lease, the off-site copy")
NOTIFY_SECTION = ("notifications", "n", "Notifications",
                  "webhooks and MQTT: sent, queued, retrying and failed, per target, and the recent ones")
MORE_SECTIONS = (STORES_SECTION, NOTIFY_SECTION)


class ConsoleApp(App[None]):
    TITLE = "SHT CCTV"
    CSS_PATH = ["app.tcss", "widgets/widgets.tcss"]
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {
        "fleet": FleetScreen, "live": LiveScreen, "events": EventsScreen, "search": SearchScreen,
        "settings": SettingsScreen, "stores": StoresScreen, "notifications": NotificationsScreen,
    }
    DEFAULT_MODE = "fleet"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, f"switch_mode('{mode}')", title) for mode, key, title, _ in SECTIONS),
        *(Binding(key, f"switch_mode('{mode}')", title, show=False) for mode, key, title, _ in MORE_SECTIONS),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    link_status: reactive[LinkStatus] = reactive(LinkStatus("connecting", ""), always_update=True)
    fleet: reactive[FleetSnapshot | None] = reactive(None, always_update=True)
    alerts: reactive[tuple[Alert, ...]] = reactive(())

    def __init__(self, store_url: str, *, token: str | None = None, ca: str | None = None,
                 link: StoreLink | None = None, live_video: bool = True, clock: Callable[[], int] = now_us) -> None:
        super().__init__()
        self.store_url = store_url
        self.ca = ca  # also verifies nodes' TLS for the live tiles
        self.link = link or StoreLink(store_url, token=token, ca=ca)
        # Sent to the nodes' /live by the Live screen's tiles when the fleet wants a viewer token.
        self.live_headers: dict[str, str] = {"Authorization": f"Bearer {token}"} if token else {}
        self.live_video = live_video  # off in tests that must not open node streams
        # The Stores screen's look at one store's /health (blocking; run in a worker thread).
        self.store_health: Callable[[str], StoreView] = HealthSource(token, ca)
        self.now_us = clock
        self._tracker = AlertTracker()
        self._frozen = False
        self.set_reactive(ConsoleApp.link_status, LinkStatus("connecting", store_url))

    def on_mount(self) -> None:
        self.run_worker(self.link.run(self.post_message), name="store link", group="store-link", exclusive=True)

    async def on_unmount(self) -> None:
        await self.link.close()

    def add_alerts(self, *new: Alert) -> None:
        if new:
            self.alerts = (*self.alerts, *new)[-MAX_ALERTS:]

    def on_store_connected(self, message: StoreConnected) -> None:
        if self.link_status.state == "reconnecting":
            self.add_alerts(Alert(self.now_us(), "info", "store", f"store {message.url} reconnected"))
        self.link_status = LinkStatus("connected", message.url)

    def on_store_lost(self, message: StoreLost) -> None:
        if message.was_connected:
            self.add_alerts(Alert(self.now_us(), "error", "store", f"store lost: {message.reason}"))
        elif self.link_status.state == "connecting":
            self.add_alerts(Alert(self.now_us(), "error", "store", message.reason))
        retry_at = asyncio.get_running_loop().time() + message.retry_in
        self.link_status = LinkStatus("reconnecting", message.url, message.reason, message.attempt, retry_at)

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        if not self._frozen:
            # Everything built so far (widgets, styles, Textual's own tables) lives for the whole session:
            # move it out of the collector's sight, or each full collection walks ~180k objects inside a
            # frame (110-210 ms pauses measured by `just bench console` with six live tiles).
            gc.freeze()
            # And collect the oldest generation ten times less often: its pauses grow with everything the
            # tiles and tables allocate after this point, and one inside a frame is what an operator notices.
            gen0, gen1, _ = gc.get_threshold()
            gc.set_threshold(gen0, gen1, 100)
            self._frozen = True
        snapshot = FleetSnapshot.from_api(message.fleet)
        self.add_alerts(*self._tracker.update(snapshot))
        self.fleet = snapshot

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for mode, key, title, text in (*SECTIONS, *MORE_SECTIONS):
            yield SystemCommand(f"{title} screen", f"{text} (key {key})", partial(self.switch_mode, mode))
        yield SystemCommand("Help", "Keys and screens (key ?)", self.action_help)
        if isinstance(screen, ConsoleScreen):
            yield from screen.palette_commands()
        yield from super().get_system_commands(screen)


def run_console(store_url: str, token: str | None = None, ca: str | None = None) -> int:
    ConsoleApp(store_url, token=token, ca=ca).run()
    return 0
