"""The fleet registry: which nodes exist, whether they are up, and their recent health.

Nodes announce themselves over ``/control`` and send a heartbeat every
``HEARTBEAT_INTERVAL_S``; a node is down after ``MISSED_HEARTBEATS_DOWN``
intervals of silence or when its link closes, and up again with its next
hello. Health history is kept in memory: a few minutes per node, enough for
the console's sparklines; the registry itself (ids, address, cameras) is in
the ``nodes`` table so the store knows its fleet after a restart.

Stores sharing a PostgreSQL index (``shared``) show one fleet. The store holding a node's link decides its state
from the heartbeats it hears and writes it to the node's row (store/nodes/fleet_table.py); every other store
reads the rows every ``READ_S`` and shows what the row says while its store keeps refreshing it, and down once
the row has gone ``STALE_S`` without a refresh (that store died or lost the index). Of the stores that see such
a row, only the maintenance lease holder (``decides_orphans``) writes it down and logs it, once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from shared.protocol.control import HEARTBEAT_INTERVAL_S, MISSED_HEARTBEATS_DOWN, Hello
from shared.protocol.errors import ProtocolError
from shared.protocol.fleet import HealthSample, NodeSummary
from shared.protocol.health import NodeHealth
from store.index.db import transaction
from store.nodes import fleet_table
from store.nodes.fleet_table import NodeRow, Refresh

log = logging.getLogger(__name__)
HISTORY_SAMPLES = 150  # five minutes at one heartbeat every two seconds
DOWN_AFTER_S = HEARTBEAT_INTERVAL_S * MISSED_HEARTBEATS_DOWN  # a node silent this long is down
# A row its link's store refreshes every REFRESH_S (2 s) is stale after this long without one: that store is
# gone. The same limit as a node's own silence, so a node on a dead store reads down as soon as one here would.
STALE_S = DOWN_AFTER_S


@dataclass
class NodeState:
    node: str
    url: str | None = None
    cameras: tuple[str, ...] = ()
    state: str = "unknown"  # up | down | unknown (known from the index, not heard since start)
    last_seen_us: int | None = None
    last_heartbeat: float | None = None  # monotonic
    health: NodeHealth | None = None  # from the last heartbeat
    history: deque[HealthSample] = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))
    changed_us: int | None = None  # when ``state`` last changed
    store: str | None = None  # the store holding its control link (this one's id while the link is here)
    # Shared index only: the row as last read, and when (monotonic, here) its refreshed_us last changed.
    row_refreshed_us: int | None = None
    row_refresh_seen: float | None = None
    row_health: str | None = None
    claimed_at: float | None = None  # monotonic: when this store's claim of the row (at hello) was committed

    def summary(self) -> NodeSummary:
        return NodeSummary(self.node, self.state, self.url, self.cameras, self.last_seen_us, self.changed_us,
                           self.health, tuple(self.history), self.store)


class Fleet:
    def __init__(self, conn: aiosqlite.Connection, now_us: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic, shared: bool = False) -> None:
        """``shared``: other stores use the same index (PostgreSQL); the fleet's state goes through its rows."""
        self.conn = conn
        self.now_us = now_us
        self.clock = clock
        self.shared = shared
        self.store_id = "this store"  # HOST:PORT, set once the store listens (StoreServer.start)
        self.decides_orphans: Callable[[], bool] = lambda: True  # this store holds the maintenance lease
        self.nodes: dict[str, NodeState] = {}
        self.links: dict[str, Any] = {}  # node -> its open control link (anything with ``send`` and ``close``)
        self.orphans_marked = 0  # rows of a dead store's nodes this store wrote down (tests, /health)
        self._last_read: float | None = None  # monotonic: the previous read of the rows

    async def load(self) -> None:
        async with self.conn.execute("SELECT node, last_seen_us, url, cameras FROM nodes") as cur:
            for node, last_seen, url, cameras in await cur.fetchall():
                self.nodes[node] = NodeState(node, url, tuple(json.loads(cameras or "[]")),
                                             last_seen_us=last_seen)
        if self.shared:
            await self.sync()  # the nodes other stores hold are up from the start

    async def hello(self, hello: Hello, host: str, link: Any) -> NodeState:
        now = self.now_us()
        state = self.nodes.setdefault(hello.node, NodeState(hello.node))
        # The scheme the node serves: a relay must speak wss:// to a node with --tls-cert.
        scheme = "https" if hello.tls else "http"
        state.url = f"{scheme}://{host}:{hello.port}" if hello.port else None
        state.cameras = hello.cameras
        state.last_seen_us, state.last_heartbeat = now, self.clock()
        self._set_state(state, "up")
        state.store, state.claimed_at = self.store_id, None
        self.links[hello.node] = link
        if self.shared:
            await fleet_table.claim(self.conn, self.store_id, hello.node, state.url, hello.cameras, now)
            state.claimed_at = self.clock()
            return state
        async with transaction(self.conn) as conn:
            await conn.execute(
                "INSERT INTO nodes (node, first_seen_us, last_seen_us, url, cameras) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET last_seen_us = excluded.last_seen_us, url = excluded.url, "
                "cameras = excluded.cameras",
                (hello.node, now, now, state.url, json.dumps(list(hello.cameras))),
            )
        return state

    def heartbeat(self, node: str, health: NodeHealth) -> None:
        state = self.nodes.get(node)
        if state is None or node not in self.links:  # a link dropped as stale: its node is another store's now
            return
        now = self.now_us()
        state.health, state.last_seen_us, state.last_heartbeat = health, now, self.clock()
        state.history.append(HealthSample.of(health, now))
        self._set_state(state, "up")

    async def link_closed(self, node: str, link: Any) -> None:
        if self.links.get(node) is not link:
            return
        del self.links[node]
        if node in self.nodes:
            self._set_state(self.nodes[node], "down")
            self.nodes[node].store = None
        if self.shared:
            try:  # the other stores see it down now, not once the row goes stale
                await fleet_table.release(self.conn, self.store_id, node, self.now_us())
            except Exception as exc:
                log.warning("node %s: could not write that its link here closed (%s); the other stores see it "
                            "down once its row goes %.0f s without a refresh", node, exc, STALE_S)

    def check(self) -> list[str]:
        """Mark silent nodes whose links are here down; returns those that just went down. (A node linked to
        another store is that store's to decide: its row says.)"""
        went_down = []
        for node in self.links:
            state = self.nodes[node]
            if state.state == "up" and state.last_heartbeat is not None and \
                    self.clock() - state.last_heartbeat > DOWN_AFTER_S:
                self._set_state(state, "down")
                went_down.append(node)
                log.warning("node %s is down: no heartbeat for %.0f s", node, DOWN_AFTER_S)
        return went_down

    def _set_state(self, state: NodeState, value: str, changed_us: int | None = None) -> None:
        if state.state != value:
            state.state, state.changed_us = value, changed_us or self.now_us()

    def node_of(self, camera: str) -> str | None:
        for state in self.nodes.values():
            if camera in state.cameras:
                return state.node
        return None

    def cameras(self) -> list[str]:
        return sorted({c for s in self.nodes.values() for c in s.cameras})

    def cameras_here(self) -> list[str]:
        """Cameras of the nodes not linked to another store: the ones this store watches for objects."""
        return sorted({c for s in self.nodes.values() if s.store in (None, self.store_id) for c in s.cameras})

    def link_store(self, node: str | None) -> str | None:
        """The other store holding the node's link while it is up there; None when here, down or unknown."""
        state = self.nodes.get(node) if node is not None else None
        if state is None or node in self.links or state.state != "up" or state.store == self.store_id:
            return None
        return state.store

    # ---- stores sharing an index ----

    async def publish(self) -> None:
        """Refresh the rows of the nodes linked here (every REFRESH_S)."""
        def held() -> list[Refresh]:
            return [Refresh(node, state.state, state.changed_us, state.last_seen_us or 0,
                            json.dumps(state.health.to_json()) if state.health is not None else None)
                    for node in self.links if (state := self.nodes[node]).claimed_at is not None]

        await fleet_table.refresh(self.conn, self.store_id, held, self.now_us())

    async def sync(self, close_link: Callable[[str, Any, str], Awaitable[None]] | None = None) -> None:
        """Read every node's row (every READ_S): nodes held elsewhere show what their row says, down once it is
        stale; a node that said hello to another store since it did here has its stale link here closed
        (``close_link``); the lease holder writes a dead store's nodes down."""
        started = self.clock()
        rows = await fleet_table.read_rows(self.conn)
        for row in rows:
            state = self.nodes.setdefault(row.node, NodeState(row.node))
            refreshed = self._note_refresh(state, row, started)
            link = self.links.get(row.node)
            if link is not None:
                # Claimed by another store after the claim here committed: the node moved there.
                moved = row.link_store not in (None, self.store_id) and state.claimed_at is not None and \
                    started > state.claimed_at
                if not moved or close_link is None:
                    continue  # the link here is what this store shows
                await close_link(row.node, link, str(row.link_store))  # then shown as its row says
            self._take_row(state, row, refreshed)
            if row.link_store is not None and not self._fresh(state) and self.decides_orphans():
                await self._decide_orphan(row)
        self._last_read = started

    def _note_refresh(self, state: NodeState, row: NodeRow, read_at: float) -> bool:
        """When the row was last refreshed, on this store's clock: a change seen since the previous read happened
        at most that long ago; a row seen for the first time is as old as the two stores' clocks say. True when
        it was refreshed since the previous read."""
        if row.refreshed_us is None:
            state.row_refreshed_us = state.row_refresh_seen = None
            return False
        if row.refreshed_us == state.row_refreshed_us:
            return False
        age = max(0.0, (self.now_us() - row.refreshed_us) / 1e6)
        if state.row_refreshed_us is not None and self._last_read is not None:
            age = min(age, read_at - self._last_read)  # another store's clock may be behind this one's
        state.row_refreshed_us, state.row_refresh_seen = row.refreshed_us, read_at - age
        return True

    def _fresh(self, state: NodeState) -> bool:
        return state.row_refresh_seen is not None and self.clock() - state.row_refresh_seen <= STALE_S

    def _take_row(self, state: NodeState, row: NodeRow, refreshed: bool) -> None:
        """A node whose link is not here, as its row says. Its history gains a sample per refresh that brought a
        newer heartbeat (refreshes and heartbeats both come every 2 s)."""
        state.url, state.cameras = row.url, row.cameras
        if row.last_seen_us is not None and (state.last_seen_us is None or row.last_seen_us > state.last_seen_us):
            state.last_seen_us = row.last_seen_us
        if row.health != state.row_health:
            state.row_health = row.health
            state.health = self._parse_health(row)
        if refreshed and state.health is not None and state.last_seen_us is not None and \
                (not state.history or state.history[-1].at_us < state.last_seen_us):
            state.history.append(HealthSample.of(state.health, state.last_seen_us))
        if row.state is None:
            return  # never written by a store sharing the index: as little known as on SQLite
        if row.link_store is not None and not self._fresh(state):
            state.store = None  # the store that held its link went silent: it is linked nowhere that answers
            self._set_state(state, "down")
            return
        state.store = row.link_store
        self._set_state(state, row.state, row.state_changed_us)

    def _parse_health(self, row: NodeRow) -> NodeHealth | None:
        if row.health is None:
            return None
        try:
            return NodeHealth.from_json(json.loads(row.health))
        except (ValueError, ProtocolError) as exc:  # a newer store's format, or a damaged row
            log.warning("node %s: the health store %s wrote is unreadable here (%s)", row.node, row.link_store, exc)
            return None

    async def _decide_orphan(self, row: NodeRow) -> None:
        if await fleet_table.mark_orphan_down(self.conn, row, self.now_us()):
            self.orphans_marked += 1
            self.nodes[row.node].store = None
            log.warning("node %s is down: store %s, which held its control link, has not refreshed it for %.0f s "
                        "(stopped, or cut off from the index)", row.node, row.link_store, STALE_S)
