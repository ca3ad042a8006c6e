"""The ``nodes`` rows through which stores sharing an index show each other's fleet.

A node has one control link, on one store. That store *claims* the node's row when the node says hello (the
latest hello wins: it is where the node is now), *refreshes* it every ``REFRESH_S`` while it holds the link (state,
last heartbeat, health, ``refreshed_us``), and *releases* it when the link closes (state down, no link store).
Refreshes and releases only touch a row this store still holds (or that nobody holds), so a store whose link went
stale never overwrites the store the node moved to. A row that stops being refreshed belongs to a store that died
or lost the index: the maintenance lease holder marks it down (``mark_orphan_down``), once, and only if nobody
refreshed or claimed it meanwhile.

Every store reads all rows every ``READ_S``; store/nodes/fleet.py turns them into the states it shows.
On SQLite (one store per index) none of this runs and the columns stay NULL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from store.index.db import transaction

REFRESH_S = 2.0  # the link's store writes its nodes' rows this often (one transaction for all of them)
READ_S = 1.0  # every store reads the rows this often


@dataclass(frozen=True)
class NodeRow:
    node: str
    url: str | None
    cameras: tuple[str, ...]
    last_seen_us: int | None
    state: str | None
    state_changed_us: int | None
    link_store: str | None
    refreshed_us: int | None
    health: str | None  # JSON NodeHealth, parsed by the reader only when it changed


@dataclass(frozen=True)
class Refresh:
    """What the link's store writes for one node it holds."""

    node: str
    state: str
    state_changed_us: int | None
    last_seen_us: int
    health: str | None


async def read_rows(conn: aiosqlite.Connection) -> list[NodeRow]:
    async with conn.execute("SELECT node, url, cameras, last_seen_us, state, state_changed_us, link_store, "
                            "refreshed_us, health FROM nodes") as cur:
        rows = await cur.fetchall()
    return [NodeRow(node, url, tuple(json.loads(cameras or "[]")), seen, state, changed, link, refreshed, health)
            for node, url, cameras, seen, state, changed, link, refreshed, health in rows]


async def claim(conn: aiosqlite.Connection, store: str, node: str, url: str | None, cameras: tuple[str, ...],
                now_us: int) -> None:
    """The node said hello here: this store holds its link now, whatever the row said."""
    async with transaction(conn):
        await conn.execute(
            "INSERT INTO nodes (node, first_seen_us, last_seen_us, url, cameras, state, state_changed_us, link_store, "
            "refreshed_us, health) VALUES (?, ?, ?, ?, ?, 'up', ?, ?, ?, NULL) "
            "ON CONFLICT (node) DO UPDATE SET last_seen_us = excluded.last_seen_us, url = excluded.url, "
            "cameras = excluded.cameras, state = 'up', state_changed_us = excluded.state_changed_us, "
            "link_store = excluded.link_store, refreshed_us = excluded.refreshed_us, health = NULL",
            (node, now_us, now_us, url, json.dumps(list(cameras)), now_us, store, now_us),
        )


async def refresh(conn: aiosqlite.Connection, store: str, held: Callable[[], list[Refresh]], now_us: int) -> None:
    """This store still holds these nodes' links: their rows say so, with their last heartbeat and health. A row
    another store claimed since is left alone (its node moved there; the reader notices and closes the link
    here); one the watchdog released for want of refreshes is taken back.

    ``held`` is asked once the write lock is ours: a link that closed before is not in it, and one that closes
    after waits for this transaction before its ``release``, so a closed link is never refreshed back up."""
    async with transaction(conn):
        nodes = held()
        await conn.executemany(
            "UPDATE nodes SET state = ?, state_changed_us = ?, last_seen_us = MAX(last_seen_us, ?), health = ?, "
            "link_store = ?, refreshed_us = ? WHERE node = ? AND (link_store = ? OR link_store IS NULL)",
            [(n.state, n.state_changed_us, n.last_seen_us, n.health, store, now_us, n.node, store) for n in nodes])


async def release(conn: aiosqlite.Connection, store: str, node: str, now_us: int) -> None:
    """The node's link here closed: it is down, and no store holds it, unless another claimed it already."""
    async with transaction(conn):
        await conn.execute(
            "UPDATE nodes SET state = 'down', state_changed_us = ?, link_store = NULL, refreshed_us = ? "
            "WHERE node = ? AND link_store = ?", (now_us, now_us, node, store))


async def mark_orphan_down(conn: aiosqlite.Connection, row: NodeRow, now_us: int) -> bool:
    """The row's store stopped refreshing it: the node is down and its link held nowhere. False when the row
    changed since it was read (refreshed, claimed by a store the node moved to): nothing to decide then."""
    async with transaction(conn):
        cur = await conn.execute(
            "UPDATE nodes SET state = 'down', state_changed_us = ?, link_store = NULL "
            "WHERE node = ? AND link_store = ? AND refreshed_us = ?",
            (now_us, row.node, row.link_store, row.refreshed_us))
    return bool(cur.rowcount)
