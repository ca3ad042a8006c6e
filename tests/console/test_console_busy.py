"""A store that answers ``busy`` (too many requests in flight with the console's token, issue 14 row 4): the
console says so where the answer was wanted, keeps running, and keeps its link to the store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.widgets import Static

import console.link
from console.app import ConsoleApp
from console.link import StoreLink
from console.screens.events import EventsScreen
from shared.query_client import StoreError
from tests.console.canned import FLEET, NOW_US, CannedStore
from tests.console.conftest import wait_until
from tests.console.test_console_snapshots import SIZE

BUSY = ("32 requests already in flight with this token over all its connections, the most one token may have "
        "(32); wait for their replies before sending more")


class BusyStore(CannedStore):
    async def call(self, method: str, **params: Any) -> Any:
        if method in ("events", "timeline"):
            raise StoreError("busy", BUSY)
        return await super().call(method, **params)


async def test_the_events_screen_shows_busy_as_a_message() -> None:
    app = ConsoleApp("http://127.0.0.1:8100", link=BusyStore(), live_video=False, clock=lambda: NOW_US)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.fleet is not None, what="the canned fleet")
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        note = screen.query_one("#events-note", Static)
        await wait_until(lambda: "in flight" in str(note.render()), what="the busy message")
        assert "wait for their replies" in str(note.render())
        assert app.link_status != "lost"


class BusyFleetClient:
    """A connected client whose fleet polls are refused ``busy`` after the first."""

    def __init__(self) -> None:
        self.polls = 0
        self.store, self.skipped = "http://127.0.0.1:8100", []  # as StoreClient: the store that answered

    async def __aenter__(self) -> BusyFleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def call(self, method: str, **params: Any) -> Any:
        self.polls += 1
        if self.polls > 1:
            raise StoreError("busy", BUSY)
        return FLEET


async def test_a_busy_fleet_poll_is_skipped_not_taken_for_a_lost_store(monkeypatch: pytest.MonkeyPatch) -> None:
    client = BusyFleetClient()
    monkeypatch.setattr(console.link, "StoreClient", lambda *args, **kwargs: client)
    link = StoreLink("http://127.0.0.1:8100", poll_interval=0.01)
    posted: list[object] = []
    task = asyncio.create_task(link.run(posted.append))
    try:
        await wait_until(lambda: client.polls >= 5, what="several refused polls")
        assert link.connected  # still the same connection
        assert [type(m).__name__ for m in posted] == ["StoreConnected", "FleetUpdated"]
    finally:
        task.cancel()
