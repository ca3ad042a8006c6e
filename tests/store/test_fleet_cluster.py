"""One fleet across stores sharing an index (store/nodes/fleet.py, fleet_table.py; settings pushed through another
store: store/nodes/control_link.py, store/index/settings.py). Two or three ``Fleet``s on one SQLite file stand in
for stores on one PostgreSQL index (the same SQL runs on both: tests/system/test_fleet_cluster.py runs it on a
real PostgreSQL with real stores and a real node); their clocks are a fake each test moves."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets

from shared.protocol.control import Hello, SettingsPush, parse_control
from shared.protocol.health import NodeHealth
from shared.protocol.query import SetSettingParams
from store.index import settings
from store.index.db import Index
from store.index.migrations import NODE_COLUMNS_4, SCHEMA_VERSION, SETTINGS_COLUMNS_4
from store.nodes.control_link import ControlLinks
from store.nodes.fleet import STALE_S, Fleet
from store.serve.api import Api

S = 1_000_000
T0 = 1_764_165_166.0  # seconds


class FakeLink:
    """A node's control connection as a store holds it: what was sent, and whether it was closed."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed: str | None = None

    async def send(self, message: str) -> None:
        if self.closed is not None:
            raise websockets.ConnectionClosed(None, None)
        self.sent.append(parse_control(message))

    async def close(self, code: int, reason: str) -> None:
        self.closed = reason


@dataclass
class Store:
    """What of a store these tests need: its index connection, fleet and control links."""

    index: Index
    fleet: Fleet
    links: ControlLinks
    closed: list[str]  # nodes whose stale link here sync() closed


class Clocks:
    """Each store's wall clock (``skew_s`` apart) and one monotonic clock, all moved by ``advance``."""

    def __init__(self) -> None:
        self.t = 0.0

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def wall_us(self, skew_s: float = 0.0):  # type: ignore[no-untyped-def]
        return lambda: int((T0 + self.t + skew_s) * S)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Clocks, Any]]:
    clocks = Clocks()
    opened: list[Index] = []

    async def store(name: str, *, lease: bool = False, skew_s: float = 0.0) -> Store:
        index = await Index.open(tmp_path / "index.sqlite3")
        opened.append(index)
        fleet = Fleet(index.conn, clocks.wall_us(skew_s), clock=lambda: clocks.t, shared=True)
        fleet.store_id, fleet.decides_orphans = name, lambda: lease
        links = ControlLinks(fleet, index, frozenset, lambda revoked: None)
        closed: list[str] = []

        async def close(node: str, link: Any, other: str) -> None:
            closed.append(node)
            await links._close_moved(node, link, other)

        made = Store(index, fleet, links, closed)
        made.fleet.sync = _with_close(made.fleet.sync, close)  # type: ignore[method-assign]
        return made

    try:
        yield clocks, store
    finally:
        for index in opened:
            await index.close()


def _with_close(sync, close):  # type: ignore[no-untyped-def]
    return lambda: sync(close)


def health(cpu: float) -> NodeHealth:
    return NodeHealth.from_json({"node": "node0", "cpu_percent": cpu, "cameras": {"cam0": {"fps": 15}}})


async def beat(clocks: Clocks, holder: Store, readers: list[Store], seconds: float, cpu: float = 20.0) -> None:
    """``seconds`` of a node heartbeating to ``holder`` every 2 s, the stores writing and reading as they do."""
    for _ in range(int(seconds)):
        clocks.advance(1)
        if int(clocks.t) % 2 == 0:
            holder.fleet.heartbeat("node0", health(cpu))
            await holder.fleet.publish()
        for reader in readers:
            await reader.fleet.sync()


def row(tmp_path: Path, node: str = "node0") -> tuple:
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        return conn.execute("SELECT state, link_store FROM nodes WHERE node = ?", (node,)).fetchone()


async def test_a_node_linked_to_one_store_shows_up_on_the_others_with_its_health_and_store(cluster, tmp_path):
    clocks, store = cluster
    a, b = await store("nas1:8100"), await store("nas2:8100")
    await b.fleet.load()
    await a.fleet.hello(Hello("node0", 8000, ("cam0", "cam1")), "10.0.0.5", FakeLink())
    await b.fleet.sync()
    seen = b.fleet.nodes["node0"]
    assert (seen.state, seen.store, seen.url, seen.cameras) == ("up", "nas1:8100", "http://10.0.0.5:8000",
                                                               ("cam0", "cam1"))
    await beat(clocks, a, [b], 10)
    assert seen.state == "up" and seen.health is not None and seen.health.process.cpu_percent == 20.0
    assert len(seen.history) == 5 and seen.history[-1].cameras["cam0"].fps == 15
    assert b.fleet.node_of("cam1") == "node0" and b.fleet.link_store("node0") == "nas1:8100"
    assert b.fleet.cameras_here() == [] and a.fleet.cameras_here() == ["cam0", "cam1"]  # A watches them
    summary = b.fleet.nodes["node0"].summary().to_json()
    assert summary["store"] == "nas1:8100" and summary["state"] == "up"
    assert a.fleet.nodes["node0"].summary().store == "nas1:8100" and a.fleet.link_store("node0") is None

    await a.fleet.link_closed("node0", a.fleet.links["node0"])  # the node went away: A says so at once
    await b.fleet.sync()
    assert (seen.state, seen.store) == ("down", None) and row(tmp_path) == ("down", None)


async def test_a_silent_store_s_nodes_go_down_everywhere_and_only_the_lease_holder_writes_it(cluster, tmp_path):
    clocks, store = cluster
    a, b, c = await store("a:1"), await store("b:1"), await store("c:1", lease=True)
    await a.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", FakeLink())
    await beat(clocks, a, [b, c], 6)
    assert b.fleet.nodes["node0"].state == c.fleet.nodes["node0"].state == "up"
    # A is SIGKILLed: nothing refreshes the row. Up while it may still be alive, down once it is stale.
    for _ in range(int(STALE_S)):
        clocks.advance(1)
        await b.fleet.sync()
        await c.fleet.sync()
    assert b.fleet.nodes["node0"].state == "up" and row(tmp_path) == ("up", "a:1")
    clocks.advance(1.5)
    await b.fleet.sync()
    assert (b.fleet.nodes["node0"].state, b.fleet.nodes["node0"].store) == ("down", None)  # shown down by all...
    assert row(tmp_path) == ("up", "a:1") and b.fleet.orphans_marked == 0  # ...decided by none but the lease's
    await c.fleet.sync()
    assert c.fleet.nodes["node0"].state == "down" and row(tmp_path) == ("down", None) and c.fleet.orphans_marked == 1
    await c.fleet.sync()
    assert c.fleet.orphans_marked == 1  # once

    # The node reconnects to B: up everywhere again, B's.
    await b.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", FakeLink())
    await beat(clocks, b, [c], 8)
    assert c.fleet.nodes["node0"].state == "up" and c.fleet.nodes["node0"].store == "b:1"
    assert row(tmp_path) == ("up", "b:1") and c.fleet.orphans_marked == 1


async def test_the_lease_holder_leaves_a_row_alone_that_was_refreshed_after_it_read_it(cluster, tmp_path):
    from store.nodes import fleet_table

    clocks, store = cluster
    a = await store("a:1")
    await a.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", FakeLink())
    stale = next(r for r in await fleet_table.read_rows(a.index.conn) if r.node == "node0")
    clocks.advance(2)
    await a.fleet.publish()  # A was only slow
    assert not await fleet_table.mark_orphan_down(a.index.conn, stale, 0) and row(tmp_path) == ("up", "a:1")


async def test_a_node_that_moved_has_its_stale_link_closed_and_the_old_store_never_overwrites_the_new(cluster,
                                                                                                    tmp_path):
    clocks, store = cluster
    a, b = await store("a:1"), await store("b:1")
    old_link = FakeLink()
    await a.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", old_link)
    await beat(clocks, a, [b], 4)
    # The node's link to A broke without A noticing (a cable pulled); it says hello to B.
    await b.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", FakeLink())
    clocks.advance(1)
    await a.fleet.publish()  # A's refresh does not take the row back
    assert row(tmp_path) == ("up", "b:1")
    await a.fleet.sync()
    await asyncio.sleep(0)  # the close runs in the background
    assert a.closed == ["node0"] and old_link.closed and "node0" not in a.fleet.links
    assert a.fleet.nodes["node0"].state == "up" and a.fleet.nodes["node0"].store == "b:1"
    assert row(tmp_path) == ("up", "b:1")  # A's release touched only a row it held


class NodeConnection(FakeLink):
    """A node's control connection as ``ControlLinks.serve`` takes it: its hello, then it closes."""

    remote_address = ("10.0.0.5", 40000)

    def __init__(self, hello: Hello) -> None:
        super().__init__()
        self.hello = hello.serialize()

    async def recv(self) -> str:
        return self.hello

    def __aiter__(self) -> NodeConnection:
        return self

    async def __anext__(self) -> str:
        raise StopAsyncIteration


async def test_a_hello_the_index_could_not_record_leaves_no_link_behind(cluster, tmp_path):
    """The index out of reach when a node says hello (e.g. it moves here from a dead store while PostgreSQL
    restarts): the claim fails and the link ends. Left in the fleet's links, this store would go on showing the node
    as its own (down once its heartbeats stop), never as its row says once it links to another store, and would
    answer a setting for it as pushed here."""
    _clocks, store = cluster
    a = await store("a:1")
    await a.index.close()
    with pytest.raises(ValueError, match="no active connection"):  # what a closed SQLite connection raises
        await a.links.serve(NodeConnection(Hello("node0", 8000, ("cam0",))), None)
    assert "node0" not in a.fleet.links
    assert a.fleet.nodes["node0"].state == "down" and a.fleet.nodes["node0"].store is None


async def test_a_link_closed_while_its_refresh_waits_is_not_refreshed_back_up(cluster, tmp_path):
    clocks, store = cluster
    a = await store("a:1")
    link = FakeLink()
    await a.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", link)
    refresh = asyncio.create_task(a.fleet.publish())
    await a.fleet.link_closed("node0", link)
    await refresh
    assert row(tmp_path) == ("down", None)


@pytest.mark.parametrize("skew_s", [-30.0, 30.0])
async def test_stores_whose_clocks_disagree_still_agree_on_who_is_up(cluster, skew_s):
    clocks, store = cluster
    a, b = await store("a:1", skew_s=skew_s), await store("b:1")
    await a.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", FakeLink())
    await b.fleet.sync()
    await beat(clocks, a, [b], 4)  # a refresh B saw change is as old as B's last read, whatever A's clock says
    assert b.fleet.nodes["node0"].state == "up"
    await beat(clocks, a, [b], 20)
    assert b.fleet.nodes["node0"].state == "up"
    for _ in range(8):  # A stops
        clocks.advance(1)
        await b.fleet.sync()
    assert b.fleet.nodes["node0"].state == "down"


async def test_a_setting_changed_through_one_store_reaches_the_node_linked_to_another_and_says_so(cluster, tmp_path,
                                                                                                  monkeypatch):
    monkeypatch.setattr("store.serve.api.PUSH_CONFIRM_S", 0.3)  # the wait for a push that does not come
    clocks, store = cluster
    a, b = await store("a:1"), await store("b:1")
    link = FakeLink()
    await a.fleet.hello(Hello("node0", 8000, ("cam0",)), "10.0.0.5", link)
    await a.links.push_settings("cam0")  # what the hello does: the node has them all, marked sent
    assert await settings.unpushed(a.index.conn) == set()
    await b.fleet.sync()
    api = Api(tmp_path / "b", b.index, b.fleet, on_setting=b.links.push_settings)

    async def follow() -> None:  # A's settings-follow loop
        while True:
            await a.links.push_changed_settings()
            await asyncio.sleep(0.05)

    follower = asyncio.create_task(follow())
    try:
        answer = await api._set_setting(SetSettingParams("cam0", "motion_sensitivity", 0.9, "ops"))
    finally:
        follower.cancel()
    assert answer["pushed"] is True and answer["via_store"] == "a:1" and answer["node"] == "node0"
    pushes = [m for m in link.sent if isinstance(m, SettingsPush)]
    assert pushes[-1].settings.motion_sensitivity == 0.9
    assert await settings.unpushed(a.index.conn) == set()

    # A stopped following (or died): B says it was not pushed, and who should have.
    answer = await asyncio.wait_for(api._set_setting(SetSettingParams("cam0", "motion_sensitivity", 0.2, "ops")), 10)
    assert answer["pushed"] is False and answer["via_store"] == "a:1"
    assert await settings.unpushed(a.index.conn) == {"cam0"}
    await a.links.push_changed_settings()  # A back: it sends what it missed
    assert [m for m in link.sent if isinstance(m, SettingsPush)][-1].settings.motion_sensitivity == 0.2
    assert await settings.unpushed(a.index.conn) == set()


async def test_a_value_changed_again_after_it_was_read_is_not_marked_sent(tmp_path):
    index = await Index.open(tmp_path / "index.sqlite3")
    try:
        await settings.set_setting(index.conn, "cam0", "motion_sensitivity", 0.3, "ops", 10)
        _, read = await settings.load_versioned(index.conn, "cam0")
        await settings.set_setting(index.conn, "cam0", "motion_sensitivity", 0.4, "ops", 11)  # meanwhile
        await settings.mark_pushed(index.conn, "cam0", read, 12)
        assert await settings.unpushed(index.conn) == {"cam0"}
        assert not await settings.wait_pushed(index.conn, "cam0", "motion_sensitivity", 11, 0.2, poll_s=0.05)
        assert not await settings.wait_pushed(index.conn, "cam0", "motion_sensitivity", 10, 0.2)  # replaced
    finally:
        await index.close()


# nodes and settings as version 3 made them.
V3_TABLES = """
DROP TABLE nodes;
CREATE TABLE nodes (node TEXT PRIMARY KEY, first_seen_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL, url TEXT,
                    cameras TEXT);
DROP TABLE settings;
CREATE TABLE settings (camera TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, changed_us INTEGER NOT NULL,
                       changed_by TEXT NOT NULL, PRIMARY KEY (camera, key));
"""


async def test_a_version_3_index_gains_the_fleet_and_settings_columns_and_keeps_its_rows(tmp_path):
    old = tmp_path / "index.sqlite3"
    await (await Index.open(old)).close()
    with sqlite3.connect(old) as conn:  # what a version-3 store left
        conn.executescript(V3_TABLES)
        conn.execute("UPDATE schema_version SET version = 3")
        conn.execute("INSERT INTO nodes VALUES ('node0', 1, 2, 'http://10.0.0.5:8000', '[\"cam0\"]')")
        conn.execute("INSERT INTO settings VALUES ('cam0', 'motion_sensitivity', '0.7', 3, 'ops')")
    conn.close()
    for _ in range(2):  # a second open changes nothing
        await (await Index.open(old)).close()
    fresh = tmp_path / "fresh.sqlite3"
    await (await Index.open(fresh)).close()
    with sqlite3.connect(old) as conn, sqlite3.connect(fresh) as new:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(5,)]
        for table, added in (("nodes", NODE_COLUMNS_4), ("settings", SETTINGS_COLUMNS_4)):
            names = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            assert names == [r[1] for r in new.execute(f"PRAGMA table_info({table})")], table
            assert names[-len(added):] == [name for name, _ in added]
        assert conn.execute("SELECT node, url, state, link_store, health FROM nodes").fetchall() == \
            [("node0", "http://10.0.0.5:8000", None, None, None)]
        assert conn.execute("SELECT value, pushed_us FROM settings").fetchall() == [("0.7", None)]
    conn.close()
    new.close()
