"""The notifications a real ``sht store`` sent: its API's ``notifications`` and the console's Notifications screen
(``n``). Events go in through the store's real /ingest; three webhooks on one receiver in the test: /ok answers
200, /refuse 400 (given up: failed), /down 500 every time (retried, the rest queued behind it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from console.app import ConsoleApp
from console.screens.notifications import NotificationsScreen
from console.widgets.notify_tables import NotificationTable, TargetTable
from shared.query_client import StoreClient, StoreError
from store.notify.webhooks import target_of
from tests.console.conftest import wait_until
from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health
from tests.system.test_webhooks import announce, closed, opened, send_events

T0 = 1_764_165_166_000_000
STATUS = {"/ok": 200, "/refuse": 400, "/down": 500}


class Receiver:
    """Answers each POST by its path (STATUS) and counts them."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.paths.append(self.path)
                self.send_response(STATUS.get(self.path, 404))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class NotifyingStore:
    url: str
    port: int
    tokens: dict[str, str]
    targets: dict[str, str]  # path -> outbox target
    receiver: str  # the webhooks' HOST:PORT


@pytest.fixture(scope="module")
def notifying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyingStore]:
    """A store with the three webhooks, two events (new and end each: 4 notifications a webhook) delivered or not."""
    tmp = tmp_path_factory.mktemp("notifications")
    (tmp / "logs").mkdir()
    processes = Processes(tmp / "logs")
    receiver = Receiver()
    root, port = tmp / "store", free_port()
    hooks = [arg for path in STATUS for arg in ("--webhook", receiver.url(path))]
    proc = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
                           "--detect", "off", *hooks)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, proc)
        keys = tokens(root)
        announce(port, keys["node"], ("cam0", "cam1"))
        for camera in ("cam0", "cam1"):  # every motion event an alert (no detector here to label them)
            asyncio.run(call(url, keys["admin"], "set_setting", camera=camera, key="notify", value="motion"))
            asyncio.run(call(url, keys["admin"], "set_setting", camera=camera, key="notify_cooldown_s", value=0))
        send_events(port, keys["node"], [closed(opened("cam0", T0)), closed(opened("cam1", T0 + 10_000_000))])
        store = NotifyingStore(url, port, keys, {path: target_of(receiver.url(path)) for path in STATUS},
                               receiver.url("").split("://")[1])
        deadline = time.monotonic() + 20
        while True:  # /ok has all 4, /refuse gave up on all 4, /down tried its first at least twice
            counts = get_json(url + "/health")["notify"]["targets"]
            ok, refuse, down = (counts.get(store.targets[p], {}) for p in STATUS)
            if ok.get("delivered") == 4 and refuse.get("failed") == 4 and down.get("retried", 0) >= 2:
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.1)
        yield store
    finally:
        processes.stop_all()
        receiver.close()


async def call(url: str, token: str, method: str, **params: Any) -> Any:
    async with StoreClient(url, token=token) as client:
        return await client.call(method, **params)


async def test_the_api_lists_each_targets_notifications_to_a_viewer(notifying: NotifyingStore) -> None:
    viewer = notifying.tokens["viewer"]
    answer = await call(notifying.url, viewer, "notifications")
    ok, refuse, down = (notifying.targets[p] for p in STATUS)
    targets = {t["target"]: t for t in answer["targets"]}
    assert set(targets) == {ok, refuse, down}
    assert {t["name"] for t in targets.values()} == {f"http://{notifying.receiver}/…"}, "no path: it may hold a token"
    assert (targets[ok]["delivered"], targets[refuse]["failed"], targets[down]["queued"]) == (4, 4, 4)
    by_target: dict[str, list[dict[str, Any]]] = {}
    for item in answer["items"]:
        by_target.setdefault(item["target"], []).append(item)
    assert [(n["camera"], n["type"], n["state"]) for n in by_target[ok]] == [
        ("cam1", "end", "sent"), ("cam1", "new", "sent"), ("cam0", "end", "sent"), ("cam0", "new", "sent")]
    assert {(n["state"], n["attempts"], n["error"].split(": ")[-1]) for n in by_target[refuse]} == {
        ("failed", 1, "HTTP 400")}
    assert [n["state"] for n in by_target[down]] == ["queued"] * 3 + ["retrying"], "the oldest holds the rest"
    retrying = by_target[down][-1]
    assert (retrying["camera"], retrying["type"], retrying["error"]) == ("cam0", "new", "HTTP 500")
    assert retrying["attempts"] >= 2 and retrying["due_us"] is not None
    assert [n["at_us"] for n in answer["items"]] == sorted((n["at_us"] for n in answer["items"]), reverse=True)

    only = await call(notifying.url, viewer, "notifications", target=refuse, limit=2)
    assert [t["target"] for t in only["targets"]] == [refuse]
    assert len(only["items"]) == 2 and {n["target"] for n in only["items"]} == {refuse}

    for params, field in (({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"target": "x" * 65}, "target"),
                          ({"target": 3}, "target")):
        with pytest.raises(StoreError) as refused:
            await call(notifying.url, viewer, "notifications", **params)
        assert (refused.value.code, refused.value.field) == ("bad-param", field), params
    with pytest.raises(StoreError) as unknown:
        await call(notifying.url, viewer, "notifications", target="webhook:0000000000000000")
    assert unknown.value.code == "not-found" and unknown.value.field == "target"
    assert ok in str(unknown.value) and down in str(unknown.value), "the message names the store's targets"


def cells(table: Any) -> list[list[str]]:
    return [[str(table.get_cell_at((row, col))) for col in range(len(table.columns))] for row in range(table.row_count)]


async def test_the_console_shows_counts_per_target_and_the_recent_notifications(notifying: NotifyingStore) -> None:
    app = ConsoleApp(notifying.url, token=notifying.tokens["viewer"], live_video=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_until(lambda: app.link_status.state == "connected", what="the console's link")
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, NotificationsScreen)
        await wait_until(lambda: screen.query_one(TargetTable).row_count == 3
                         and screen.query_one(NotificationTable).row_count == 12, what="3 targets, 12 notifications")
        rows = {r[0]: r for r in cells(screen.query_one(TargetTable))}
        port = notifying.receiver.split(":")[1]
        # One host: told apart by their targets' first digits; 20 characters at most, the port kept.
        names = {p: next((n for n in rows if n.endswith(f":{port} #{notifying.targets[p].split(':')[1][:4]}")), p)
                 for p in STATUS}
        assert set(rows) == set(names.values()) and all(len(n) <= 20 for n in rows), rows
        # target, queued, sent, retried, failed, dropped, last error
        assert rows[names["/ok"]][1:6] == ["0", "4", "0", "0", "0"]
        assert rows[names["/refuse"]][1:3] == ["0", "0"] and rows[names["/refuse"]][4] == "4"
        assert "HTTP 400" in rows[names["/refuse"]][6]
        assert rows[names["/down"]][1] == "4" and int(rows[names["/down"]][3]) >= 2
        assert rows[names["/down"]][6] == "HTTP 500"
        listed = cells(screen.query_one(NotificationTable))  # time, target, camera, label, type, state, error
        assert sorted((r[1], r[5].split(" ")[0]) for r in listed) == sorted(
            [(names["/ok"], "sent")] * 4 + [(names["/refuse"], "failed")] * 4
            + [(names["/down"], "queued")] * 3 + [(names["/down"], "retrying")])
        assert all("HTTP 400" in r[6] for r in listed if r[5] == "failed")
        assert "12 queued" not in str(screen.query_one("#notify-line").render())
        assert "4 queued" in str(screen.query_one("#notify-line").render())

        await pilot.press("o")  # the first target's only
        first = screen.report.targets[0].target if screen.report else ""
        await wait_until(lambda: {r[1] for r in cells(screen.query_one(NotificationTable))} == {
            screen.names[first]}, what="one target's notifications")
        await pilot.press("o", "o", "o")  # the second, the third, then every target again
        await wait_until(lambda: screen.query_one(NotificationTable).row_count == 12, what="all again")

        # A new event: its notifications show up at the next refresh (every 2 s), without a key.
        send_events(notifying.port, notifying.tokens["node"], [opened("cam1", T0 + 20_000_000)])
        await wait_until(lambda: screen.query_one(NotificationTable).row_count == 15, seconds=8,
                         what="the new event's 3 notifications (one a webhook)")
        newest = cells(screen.query_one(NotificationTable))[:3]
        assert {(r[2], r[4]) for r in newest} == {("cam1", "new")}
        assert "event" in str(screen.query_one("#notify-detail").render())
