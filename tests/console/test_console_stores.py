"""The Stores screen (``t``) against real stores: two on SQLite (each its own), two on one PostgreSQL index (one
holds the maintenance lease), a store that dies, and an off-site copy that cannot reach its bucket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import ConsoleApp
from console.screens.stores import StoresScreen
from console.store_health import StoreView
from console.widgets.store_table import StoreTable
from sht.demo import _die_with_parent
from tests.console.conftest import wait_until
from tests.store.postgres import PostgresCluster, running_postgres
from tests.system.conftest import free_port, get_json, wait_for_health

SIZE = (110, 30)


class Stores:
    """``sht store`` processes on loopback (no tokens: these tests are about the console)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def start(self, name: str, *extra: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        with open(self.base / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sht", "store", "--root", str(self.base / name), "--host", "127.0.0.1",
                 "--port", str(port), "--no-auth", "--detect", "off", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                preexec_fn=_die_with_parent)
        self.procs[name], self.urls[name] = proc, f"http://127.0.0.1:{port}"
        wait_for_health(self.urls[name], proc, timeout=60)
        return self.urls[name]

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    running = Stores(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def rows(app: ConsoleApp) -> dict[str, dict[str, str]]:
    """The table as text: store (host:port) -> column -> cell."""
    table = app.screen.query_one(StoreTable)
    out = {}
    for key in table.rows:
        cells = {str(col.value): str(table.get_cell(key, col)) for col in table.columns}
        out[cells["store"]] = cells
    return out


def views(app: ConsoleApp) -> list[StoreView]:
    screen = app.screen
    return screen.views if isinstance(screen, StoresScreen) else []


def text_of(app: ConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_two_stores_each_on_its_own_index_one_in_use_then_one_dies(stores: Stores) -> None:
    a, b = stores.start("a"), stores.start("b")
    app = ConsoleApp(f"{a},{b}", live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.link_status.state == "connected", what="the console's link")
        await pilot.press("t")
        await wait_until(lambda: len(views(app)) == 2 and all(v.up for v in views(app)), what="both stores up")
        await pilot.pause()
        table = rows(app)
        host_a, host_b = a.split("://")[1], b.split("://")[1]
        assert table[host_a]["using"] == "▶" and table[host_b]["using"] == ""  # the link is on the first
        for host in (host_a, host_b):
            assert table[host]["status"].startswith("up ")
            assert (table[host]["index"], table[host]["segments"], table[host]["lease"]) == \
                ("sqlite", "files", "own index")
            assert table[host]["replica"] == "off"
        assert "share nothing" in text_of(app, "#lease-line")
        assert "the console's link is on this store" in text_of(app, "#store-detail")

        stores.kill("b")
        await wait_until(lambda: rows(app)[host_b]["status"] == "down", seconds=10, what="b shown down")
        await pilot.press("down")  # select b
        await wait_until(lambda: "not answering" in text_of(app, "#store-detail"), what="b's reason")
        assert "1 of 2 not answering" in text_of(app, "#lease-line")
        assert rows(app)[host_a]["status"].startswith("up ")


async def test_two_stores_on_one_postgresql_index_show_exactly_one_lease_holder(
        stores: Stores, postgres: PostgresCluster, tmp_path: Path) -> None:
    index = postgres.create_database()
    # An off-site copy nobody answers for: the holder copies (and fails, saying where), the other waits.
    nobody = f"s3://copy?endpoint=http://127.0.0.1:{free_port()}"
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    a = stores.start("a", "--index", index, "--replica", nobody, env=env)
    b = stores.start("b", "--index", index, "--replica", nobody, env=env)
    app = ConsoleApp(f"{b},{a}", live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")

        def one_holder_and_its_copy_failing() -> bool:
            table = rows(app) if len(views(app)) == 2 else {}
            return sorted(r["lease"] for r in table.values()) == ["holder", "standby"] and \
                any(r["replica"].startswith("failing") for r in table.values())

        await wait_until(one_holder_and_its_copy_failing, seconds=30, what="one holder, its copy failing")
        table = rows(app)
        holder = next(host for host, r in table.items() if r["lease"] == "holder")
        standby = next(host for host, r in table.items() if r["lease"] == "standby")
        # What the stores themselves say
        assert get_json(f"http://{holder}/health")["index"] == {"backend": "postgresql", "maintenance": True}
        assert get_json(f"http://{standby}/health")["index"]["maintenance"] is False
        assert table[holder]["index"] == table[standby]["index"] == "postgresql"
        assert table[holder]["replica"].startswith("failing") and table[standby]["replica"] == "standby"
        assert f"maintenance lease: {holder}" in text_of(app, "#lease-line")
        table_widget = app.screen.query_one(StoreTable)
        table_widget.move_cursor(row=list(table).index(holder))
        await wait_until(lambda: "last error" in text_of(app, "#store-detail"), what="the copy's error")
        assert "does not answer" in text_of(app, "#store-detail") and "holds the maintenance lease" in \
            text_of(app, "#store-detail")
        # PostgreSQL away: both stores still answer, and say they cannot read their index
        postgres.stop("immediate")
        try:
            await wait_until(lambda: all(r["status"] == "no index" for r in rows(app).values()), seconds=30,
                             what="both stores shown without their index")
            assert "cannot read its index" in text_of(app, "#store-detail")
        finally:
            postgres.start()
        await wait_until(lambda: all(r["status"].startswith("up ") for r in rows(app).values()), seconds=30,
                         what="both stores back on their index")
