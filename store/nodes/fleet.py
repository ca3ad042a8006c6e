"""The fleet registry: which nodes exist, whether they are up, and their recent health.

Nodes announce themselves over ``/control`` and send a heartbeat every
``HEARTBEAT_INTERVAL_S``; a node is down after ``MISSED_HEARTBEATS_DOWN``
intervals of silence or when its link closes, and up again with its next
hello. Health history is kept in memory: a few minutes per node, enough for
the console's sparklines; the registry itself (ids, address, cameras) is in
the ``nodes`` table so the store knows its fleet after a restart.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from shared.protocol.control import HEARTBEAT_INTERVAL_S, MISSED_HEARTBEATS_DOWN, Hello
from shared.protocol.fleet import HealthSample, NodeSummary
from shared.protocol.health import NodeHealth
from store.index.db import transaction

HISTORY_SAMPLES = 150  # five minutes at one heartbeat every two seconds


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

    def summary(self) -> NodeSummary:
        return NodeSummary(self.node, self.state, self.url, self.cameras, self.last_seen_us, self.changed_us,
                           self.health, tuple(self.history))


class Fleet:
    def __init__(self, conn: aiosqlite.Connection, now_us: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conn = conn
        self.now_us = now_us
        self.clock = clock
        self.nodes: dict[str, NodeState] = {}
        self.links: dict[str, Any] = {}  # node -> its open control link (anything with ``push``)

    async def load(self) -> None:
        async with self.conn.execute("SELECT node, last_seen_us, url, cameras FROM nodes") as cur:
            for node, last_seen, url, cameras in await cur.fetchall():
                self.nodes[node] = NodeState(node, url, tuple(json.loads(cameras or "[]")),
                                             last_seen_us=last_seen)

    async def hello(self, hello: Hello, host: str, link: Any) -> NodeState:
        now = self.now_us()
        state = self.nodes.setdefault(hello.node, NodeState(hello.node))
        # The scheme the node serves: a relay must speak wss:// to a node with --tls-cert.
        scheme = "https" if hello.tls else "http"
        state.url = f"{scheme}://{host}:{hello.port}" if hello.port else None
        state.cameras = hello.cameras
        state.last_seen_us, state.last_heartbeat = now, self.clock()
        self._set_state(state, "up")
        self.links[hello.node] = link
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
        if state is None:
            return
        now = self.now_us()
        state.health, state.last_seen_us, state.last_heartbeat = health, now, self.clock()
        state.history.append(HealthSample.of(health, now))
        self._set_state(state, "up")

    def link_closed(self, node: str, link: Any) -> None:
        if self.links.get(node) is link:
            del self.links[node]
            if node in self.nodes:
                self._set_state(self.nodes[node], "down")

    def check(self) -> list[str]:
        """Mark silent nodes down; returns those that just went down."""
        limit = HEARTBEAT_INTERVAL_S * MISSED_HEARTBEATS_DOWN
        went_down = []
        for state in self.nodes.values():
            if state.state == "up" and state.last_heartbeat is not None and \
                    self.clock() - state.last_heartbeat > limit:
                self._set_state(state, "down")
                went_down.append(state.node)
        return went_down

    def _set_state(self, state: NodeState, value: str) -> None:
        if state.state != value:
            state.state, state.changed_us = value, self.now_us()

    def node_of(self, camera: str) -> str | None:
        for state in self.nodes.values():
            if camera in state.cameras:
                return state.node
        return None

    def cameras(self) -> list[str]:
        return sorted({c for s in self.nodes.values() for c in s.cameras})
