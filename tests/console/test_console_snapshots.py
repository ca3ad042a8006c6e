"""Screenshots of every screen, fed fixed data (tests/console/canned.py) at a fixed size, time and zone.

Update them after an intended change with ``pytest tests/console --snapshot-update``
and look at the new SVGs in tests/console/__snapshots__/.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from console.app import ConsoleApp
from console.screens.events import EventsScreen
from console.screens.live import LiveScreen
from console.screens.notifications import NotificationsScreen
from console.screens.search import SearchScreen
from console.screens.settings import SettingsScreen
from console.screens.stores import StoresScreen
from console.store_health import StoreView
from console.widgets.camera_tile import CameraTile
from tests.console.canned import FLEET, NOW_US, CannedStore, gradient
from tests.console.conftest import wait_until

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")
SIZE = (100, 30)
RunBefore = Callable[[Pilot[Any]], Awaitable[None]]


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Times on screen in UTC, whatever the machine's zone."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def canned_app(fleet: dict[str, Any] | None = None) -> ConsoleApp:
    return ConsoleApp("http://127.0.0.1:8100", link=CannedStore(fleet), live_video=False, clock=lambda: NOW_US)


def on(key: str, ready: Callable[[Pilot[Any]], bool] = lambda pilot: True) -> RunBefore:
    """Wait for the canned fleet, press ``key``, wait until ``ready``."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(lambda: pilot.app.fleet is not None, what="the canned fleet")  # type: ignore[attr-defined]
        if key:
            await pilot.press(key)
        await wait_until(lambda: ready(pilot), what="the screen's data")
        await pilot.pause()

    return run_before


def test_fleet(snap_compare: Any) -> None:
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=on(""))


def test_fleet_at_80x24(snap_compare: Any) -> None:
    assert snap_compare(canned_app(), terminal_size=(80, 24), run_before=on(""))


def test_fleet_with_a_failed_detector(snap_compare: Any) -> None:
    fleet = copy.deepcopy(FLEET)
    fleet["detector"].update(state="failed", errors=3, restarts=2,
                             last_error="detector process exited with code -9; restarting in 2 s")
    assert snap_compare(canned_app(fleet), terminal_size=SIZE, run_before=on(""))


def test_live(snap_compare: Any) -> None:
    def with_pictures(pilot: Pilot[Any]) -> bool:
        tiles = {t.camera: t for t in pilot.app.screen.query(CameraTile)}
        if set(tiles) != {"cam0", "cam1", "cam2"}:
            return False
        if tiles["cam0"].state != "live":
            tiles["cam0"].show_frame(gradient(), NOW_US - 400_000)
            tiles["cam1"].show_frame(gradient(tint=(200, 60, 90)), NOW_US - 300_000)
        return True

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=on("l", with_pictures))


def test_events(snap_compare: Any) -> None:
    def thumbnail_shown(pilot: Pilot[Any]) -> bool:
        screen = pilot.app.screen
        return isinstance(screen, EventsScreen) and screen.query_one("#event-thumb").image is not None  # type: ignore[attr-defined]

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=on("e", thumbnail_shown))


def test_events_filtered_by_label(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await on("e", lambda p: isinstance(p.app.screen, EventsScreen) and len(p.app.screen.events) == 3)(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, EventsScreen)
        await pilot.press("o", "o")  # all → car → person
        await wait_until(lambda: screen.label == "person" and len(screen.events) == 1
                         and screen.query_one("#event-thumb").image is not None,  # type: ignore[attr-defined]
                         what="the person events")
        await pilot.pause()

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=run_before)


def test_search(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await on("s")(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, SearchScreen)
        screen.action_search()
        await wait_until(lambda: screen.query_one("#search-thumb").image is not None,  # type: ignore[attr-defined]
                         what="the preview")
        await pilot.pause()

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=run_before)


def test_settings(snap_compare: Any) -> None:
    def loaded(pilot: Pilot[Any]) -> bool:
        screen = pilot.app.screen
        return isinstance(screen, SettingsScreen) and screen.cameras == ["cam0", "cam1", "cam2"]

    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=on("c", loaded))


def test_help(snap_compare: Any) -> None:
    assert snap_compare(canned_app(), terminal_size=SIZE, run_before=on("question_mark"))


async def test_every_action_is_in_the_command_palette() -> None:
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Fleet screen", "Live screen", "Events screen", "Search screen", "Settings screen", "Stores screen",
                "Notifications screen", "Help", "Quit"} <= titles
        for key, screen_titles in (("e", {"Events: export clip", "Events: last hour / last day", "Events: refresh"}),
                                   ("s", {"Search: run", "Search: export row", "Search: export range"}),
                                   ("c", {"Settings: save", "Settings: refresh"}), ("t", {"Stores: refresh"}),
                                   ("n", {"Notifications: refresh", "Notifications: next target"})):
            await pilot.press(key)
            assert screen_titles <= {c.title for c in app.get_system_commands(app.screen)}
        await pilot.press("ctrl+p")
        await pilot.press(*"live screen")
        await wait_until(lambda: found_first(app, "Live screen"), what="the palette to find the command")
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, LiveScreen), what="the palette to open the Live screen")


def found_first(app: ConsoleApp, title: str) -> bool:
    """The command palette's first match is ``title``."""
    matches = app.screen.query("CommandList")
    if not matches or matches.first().option_count == 0:  # type: ignore[attr-defined]
        return False
    return title in str(matches.first().get_option_at_index(0).prompt)  # type: ignore[attr-defined]


STORES = "http://127.0.0.1:8100,http://127.0.0.1:8101,http://127.0.0.1:8102"


def canned_store_health(url: str) -> StoreView:
    """Three stores: the lease holder copying off-site, a standby, and one that does not answer."""
    common = {"service": "store", "uptime_s": 7384.0, "nodes": {"node0": "up", "node1": "up"},
              "segments": {"backend": "s3", "where": "s3://cctv/site-a at http://nas2.local:8333"}}
    if url.endswith(":8102"):
        return StoreView.down(url, "[Errno 111] Connection refused")
    if url.endswith(":8100"):
        return StoreView.from_health(url, {**common, "ingest": {"stored": 1234},
                                           "index": {"backend": "postgresql", "maintenance": True},
                                           "replica": {"url": "s3://cctv-copy/site-a at https://offsite:8333",
                                                       "state": "copying", "seconds_behind": 12.4,
                                                       "bytes_behind": 3_400_000, "objects_pending": 5}})
    return StoreView.from_health(url, {**common, "ingest": {"stored": 567},
                                       "index": {"backend": "postgresql", "maintenance": False},
                                       "replica": {"state": "standby"}})


def test_stores(snap_compare: Any) -> None:
    app = ConsoleApp(STORES, link=CannedStore(), live_video=False, clock=lambda: NOW_US)
    app.store_health = canned_store_health

    def shown(pilot: Pilot[Any]) -> bool:
        return isinstance(pilot.app.screen, StoresScreen) and len(pilot.app.screen.views) == 3

    assert snap_compare(app, terminal_size=(80, 24), run_before=on("t", shown))  # the table fits 80 columns


def test_notifications(snap_compare: Any) -> None:
    def shown(pilot: Pilot[Any]) -> bool:
        screen = pilot.app.screen
        return isinstance(screen, NotificationsScreen) and screen.report is not None

    assert snap_compare(canned_app(), terminal_size=(80, 24), run_before=on("n", shown))  # the tables fit 80 columns
