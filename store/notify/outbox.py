"""The notify outbox: a durable, ordered, bounded queue per delivery target, in ``ROOT/notify.sqlite3``.

One file per store process (also when the index is PostgreSQL: each store notifies the events it took in), its
own SQLite connection (aiosqlite, WAL, ``synchronous=FULL``): a ``put`` that returned is on disk, so what was put
and not ``done`` is delivered after a restart, a ``kill -9`` or a power cut included. Delivery is therefore at
least once: a crash between a delivery and its ``done`` delivers it again (receivers dedupe by the event id).

**For senders** (webhooks here, MQTT in store/notify/mqtt/), one sender per target (``"mqtt"``,
``"webhook:<hash>"``)::

    outbox = await Outbox.open(root / OUTBOX_FILE)        # the store opens one (store/app.py: store.outbox)
    await outbox.put("mqtt", payload_bytes, {"topic": "sht/events"})  # in the order of the changes
    await outbox.put_many([("mqtt", payload, meta), ...])  # several in one transaction (one write to disk)
    item = await outbox.next("mqtt")      # waits for the oldest item, and for its retry time if it has one
    await outbox.done(item.id)            # delivered: gone
    await outbox.retry_later(item.id, 5.0, "connection refused")  # stays first; next() gives it again in 5 s
    await outbox.drop(item.id, "HTTP 400")  # given up (failed): gone, counted, logged
    outbox.counts("mqtt")                 # TargetCounts: queued, published, delivered, retried, dropped, failed

Order: ``next`` always gives a target's oldest item, so items are delivered in the order they were put; an item
waiting for its retry holds back the ones behind it. Bound: at most ``max_items`` a target (``limit`` changes one
target's); a ``put`` past it deletes the oldest, which are counted as ``dropped`` and logged. ``failed`` counts the
items a sender gave up on (``drop``). Counters count from the process's start (Prometheus counters); ``queued``
is what the file holds. ``on_finished`` hears of each item's end (sent, failed, dropped) with the item as it was:
the store keeps the recent ones for the console (store/notify/history.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

OUTBOX_FILE = "notify.sqlite3"
DEFAULT_MAX_ITEMS = 10_000
MAX_ERROR_CHARS = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order of put, over all targets; never reused
    target TEXT NOT NULL,                  -- 'mqtt', 'webhook:<hash>', ...
    payload BLOB NOT NULL,                 -- what is sent (the change's JSON, a retained state, ...)
    meta TEXT NOT NULL,                    -- JSON object: what the sender needs beside it (topic, event id, ...)
    put_us INTEGER NOT NULL,               -- when it was put (wall clock, µs)
    attempts INTEGER NOT NULL DEFAULT 0,   -- failed deliveries so far
    due_us INTEGER NOT NULL DEFAULT 0,     -- not before (wall clock, µs): a retry's backoff
    last_error TEXT                        -- why the last delivery failed
);
CREATE INDEX IF NOT EXISTS outbox_by_target ON outbox (target, id);
"""
OutboxPut = tuple[str, bytes, "Mapping[str, Any] | None"]  # (target, payload, meta): one item to put
T = TypeVar("T")
_SELECT = "SELECT id, target, payload, meta, put_us, attempts, due_us, last_error FROM outbox"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    target: str
    payload: bytes
    meta: dict[str, Any]
    put_us: int
    attempts: int
    due_us: int
    last_error: str | None


def item_of(row: Any) -> OutboxItem:
    """An ``OutboxItem`` from a row of ``_SELECT``."""
    item_id, target, payload, meta, put_us, attempts, due_us, error = row
    return OutboxItem(int(item_id), str(target), bytes(payload), json.loads(meta), int(put_us), int(attempts),
                      int(due_us), error)


@dataclass
class TargetCounts:
    queued: int = 0  # in the file now
    published: int = 0  # put since the process started
    delivered: int = 0
    retried: int = 0  # deliveries that failed and will be tried again
    dropped: int = 0  # the oldest, deleted undelivered because the target's queue was full
    failed: int = 0  # given up on by the sender (e.g. a webhook's 4xx)
    last_error: str | None = None
    last_error_us: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"queued": self.queued, "published": self.published, "delivered": self.delivered,
                "retried": self.retried, "dropped": self.dropped, "failed": self.failed,
                "last_error": self.last_error, "last_error_us": self.last_error_us}


@dataclass
class _Target:
    counts: TargetCounts = field(default_factory=TargetCounts)
    max_items: int = DEFAULT_MAX_ITEMS
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set by put (and by anything a waiter must see)


def _now_us() -> int:
    return time.time_ns() // 1000


class Outbox:
    def __init__(self, conn: aiosqlite.Connection, path: Path, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        self.conn, self.path, self.max_items = conn, path, max_items
        self._targets: dict[str, _Target] = {}
        self._lock = asyncio.Lock()  # one transaction at a time on the connection
        self.closed = False
        # Told of each end: (state "sent"|"failed"|"dropped", target, the item or None, error, count); the
        # store's recent-notifications list (store/notify/history.py). Must not raise.
        self.on_finished: Callable[[str, str, OutboxItem | None, str | None, int], None] | None = None

    @classmethod
    async def open(cls, path: Path, max_items: int = DEFAULT_MAX_ITEMS) -> Outbox:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")  # a put that returned survives a power cut too
            await conn.executescript(_SCHEMA)
            # A new process tries at once what waited for a retry: the restart may be the fix (network, config).
            await conn.execute("UPDATE outbox SET due_us = 0 WHERE due_us != 0")
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        outbox = cls(conn, path, max_items)
        async with conn.execute("SELECT target, COUNT(*) FROM outbox GROUP BY target") as cur:
            for target, queued in await cur.fetchall():
                outbox._target(str(target)).counts.queued = int(queued)
        waiting = {t: s.counts.queued for t, s in outbox._targets.items() if s.counts.queued}
        if waiting:
            log.info("notify outbox %s: undelivered from before: %s", path,
                     ", ".join(f"{t} {n}" for t, n in sorted(waiting.items())))
        return outbox

    async def close(self) -> None:
        self.closed = True
        for state in self._targets.values():
            state.wake.set()  # waiters in next() see closed and return None
        await self.conn.close()

    def _target(self, target: str) -> _Target:
        state = self._targets.get(target)
        if state is None:
            state = self._targets[target] = _Target(max_items=self.max_items)
        return state

    # ---- what the store and the senders read ----

    def targets(self) -> list[str]:
        return sorted(self._targets)

    def counts(self, target: str) -> TargetCounts:
        return self._target(target).counts

    def health(self) -> dict[str, dict[str, Any]]:
        return {target: self._targets[target].counts.to_json() for target in sorted(self._targets)}

    def limit(self, target: str, max_items: int) -> None:
        """This target's bound (applied at its next put)."""
        if max_items < 1:
            raise ValueError(f"an outbox target holds at least 1 item, got {max_items}")
        self._target(target).max_items = max_items

    # ---- putting ----

    async def put(self, target: str, payload: bytes, meta: Mapping[str, Any] | None = None) -> int:
        """Queue ``payload`` for ``target`` durably (on disk when this returns); its id. Past the target's bound,
        its oldest items are deleted (``dropped``)."""
        (item_id,) = await self.put_many([(target, payload, meta)])
        return item_id

    async def put_many(self, items: Sequence[OutboxPut], also: Callable[[aiosqlite.Connection], Awaitable[None]]
                       | None = None) -> list[int]:
        """Queue several items in one transaction (one write to disk), in order; their ids. ``also(conn)`` runs in
        the same transaction before its commit: the change journal records there that a subscriber has put them
        (store/notify/journal.py), so both happen or neither."""
        added: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        ids: list[int] = []
        now = _now_us()

        async def work(conn: aiosqlite.Connection) -> None:
            for target, payload, meta in items:
                cur = await conn.execute("INSERT INTO outbox (target, payload, meta, put_us) VALUES (?, ?, ?, ?)",
                                         (target, bytes(payload), json.dumps(dict(meta or {}), separators=(",", ":")),
                                          now))
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
                added[target] += 1
            for target, n in added.items():
                state = self._target(target)
                over = state.counts.queued + n - state.max_items
                if over > 0:
                    cur = await conn.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE target = ? "
                                             "ORDER BY id LIMIT ?)", (target, over))
                    dropped[target] = max(cur.rowcount, 0)
            if also is not None:
                await also(conn)

        await self.transact(work)
        for target, n in added.items():
            self._added(target, n, dropped[target])
        return ids

    async def transact(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``work(conn)`` as one transaction on the outbox's connection (committed, or rolled back if it
        raises); the journal's writes use it too, so each is serialised with the outbox's."""
        async with self._lock:
            try:
                result = await work(self.conn)
                await self.conn.commit()
            except BaseException:
                await self.conn.rollback()
                raise
        return result

    def _added(self, target: str, n: int, dropped: int) -> None:
        """Counters and waiters after ``n`` items of ``target`` were put and its ``dropped`` oldest deleted."""
        state = self._target(target)
        state.counts.published += n
        state.counts.queued += n - dropped
        if dropped:
            state.counts.dropped += dropped
            self._tell("dropped", target, None, f"its queue was full ({state.max_items}): the oldest dropped", dropped)
            before = state.counts.dropped - dropped
            if before == 0 or before // 1000 != state.counts.dropped // 1000:  # the first time, then every 1000
                log.error("notify: %s holds %d undelivered items, its most: the oldest %d dropped (%d so far); "
                          "is the target reachable? (last error: %s)", target, state.max_items, dropped,
                          state.counts.dropped, state.counts.last_error)
        state.wake.set()

    # ---- taking ----

    async def peek(self, target: str) -> OutboxItem | None:
        """The target's oldest item (due or not), or None when it has none."""
        async with self.conn.execute(f"{_SELECT} WHERE target = ? ORDER BY id LIMIT 1", (target,)) as cur:
            row = await cur.fetchone()
        return None if row is None else item_of(row)

    async def next(self, target: str, wait_s: float | None = None) -> OutboxItem | None:
        """The target's oldest item once it is due (waiting for one to be put, and for its retry time). None after
        ``wait_s`` seconds with none due, or when the outbox closes."""
        state = self._target(target)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while not self.closed:
            state.wake.clear()
            item = await self.peek(target)
            wait: float | None = None
            if item is not None:
                wait = (item.due_us - _now_us()) / 1e6
                if wait <= 0:
                    return item
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait = left if wait is None else min(wait, left)
            try:
                await asyncio.wait_for(state.wake.wait(), wait)
            except TimeoutError:
                pass
        return None

    async def _finish(self, item_id: int, sql: str, args: tuple[Any, ...]) -> OutboxItem | None:
        """Run ``sql`` on the item's row; the item as it was, or None when it is gone (dropped meanwhile)."""
        async with self._lock:
            async with self.conn.execute(f"{_SELECT} WHERE id = ?", (item_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            await self.conn.execute(sql, args)
            await self.conn.commit()
        return item_of(row)

    def _tell(self, state: str, target: str, item: OutboxItem | None, error: str | None, count: int = 1) -> None:
        if self.on_finished is not None:
            self.on_finished(state, target, item, error, count)

    async def done(self, item_id: int) -> None:
        """Delivered: the item goes."""
        item = await self._finish(item_id, "DELETE FROM outbox WHERE id = ?", (item_id,))
        if item is not None:
            counts = self._target(item.target).counts
            counts.delivered += 1
            counts.queued -= 1
            self._tell("sent", item.target, item, item.last_error)

    async def retry_later(self, item_id: int, delay_s: float, error: str) -> None:
        """Its delivery failed: it stays first of its target and is due again in ``delay_s``."""
        error = error[:MAX_ERROR_CHARS]
        now = _now_us()
        item = await self._finish(
            item_id, "UPDATE outbox SET attempts = attempts + 1, due_us = ?, last_error = ? WHERE id = ?",
            (now + int(max(0.0, delay_s) * 1e6), error, item_id))
        if item is not None:
            counts = self._target(item.target).counts
            counts.retried += 1
            counts.last_error, counts.last_error_us = error, now

    async def drop(self, item_id: int, reason: str) -> None:
        """Given up on (e.g. the receiver refused it for good): the item goes, counted as ``failed``."""
        reason = reason[:MAX_ERROR_CHARS]
        item = await self._finish(item_id, "DELETE FROM outbox WHERE id = ?", (item_id,))
        if item is not None:
            counts = self._target(item.target).counts
            counts.failed += 1
            counts.queued -= 1
            counts.last_error, counts.last_error_us = reason, _now_us()
            log.error("notify: gave up on item %d for %s: %s", item_id, item.target, reason)
            self._tell("failed", item.target, item, reason)

    async def discard(self, target: str, reason: str) -> int:
        """Delete every item of a target no longer configured (a webhook removed); counted as ``dropped``."""
        async with self._lock:
            cur = await self.conn.execute("DELETE FROM outbox WHERE target = ?", (target,))
            await self.conn.commit()
        gone = max(cur.rowcount, 0)
        if gone:
            counts = self._target(target).counts
            counts.dropped += gone
            counts.queued = 0
            log.warning("notify: dropped %d undelivered items of %s: %s", gone, target, reason)
            self._tell("dropped", target, None, reason, gone)
        return gone
