"""The change journal: every event change the store is about to commit, kept on disk first, until each subscriber
of the change feed (the webhooks' router, the MQTT bridge) has put what it makes of it in the outbox.

Why: a node's event is acknowledged once its row is committed in the index, and the node never sends it again;
the change then goes through memory (the feed, a subscriber) before it is in the durable outbox. Without the
journal a store killed in that moment (``kill -9``, a power cut) lost the notification for good; the detector's
label (the alert, under ``notify = objects``) had the same gap and nothing that would ever resend it.

How (one table in ``ROOT/notify.sqlite3``, beside the outbox, on the outbox's connection, ``synchronous=FULL``):

- **Append, before the index commit.** Event ingest (store/ingest/events.py ``ingest_event``) appends, inside
  its index transaction and before its commit, one record per row it changes: ``new`` (the row's key, camera,
  start and kind: its id comes with the insert), ``update`` (the message's row), ``ended`` (an older open row the
  store ends). The detector (store/detect/service.py) appends ``labelled`` before it writes labels or a snapshot.
  So the node's ack and the detector's commit both come after the record is on disk. Each record has a ``seq``,
  increasing, never reused.
- **Publish from memory, mark on disk.** After the commit the part reports to the feed as before, with the seq;
  the feed publishes the change to each subscription as a ``Batch`` with ``through``: every record up to it is
  published (``through`` trails a record appended but not yet reported: the detector's append is made before it
  waits for the index). A subscriber puts the batch's items in the outbox and, in the same SQLite transaction,
  raises its **mark** (``journal_marks``) to ``through`` (``Subscription.put``); records every subscriber has
  passed are deleted there too.
- **Replay at start.** Records above the lowest mark are read back before any new change: each row as it is now
  in the index is published (``new`` records as ``new``, the others as ``update``/``end``), and a subscriber is
  handed only those above its own mark. ``before`` is then what the replay published for that event, else null:
  the event as the dead process published it is not known. The replay first waits (up to
  ``changes.ZONES_WAIT_S``) for every node's first heartbeat: it names the zones the alert rules and webhook
  filters look at, and a store just started knows none.

What it promises: a change whose record was appended reaches every subscriber's outbox, once per subscriber (the
put and the mark commit together), unless the row is gone by then (retention). A record whose row never committed
(the store killed between the append and the commit) replays nothing new: a ``new`` finds no row; an ``update``
finds the row as it was (an ``update`` with ``before`` null, the same event again). The node was not acknowledged
and sends the event again. A replayed change carries the event as it is at the replay (several changes of one
event may come as one), and the alert rules decide it afresh (their cooldown memory starts empty), so a replayed
``update`` may be sent to webhooks as an alert though its ``new`` was sent before the kill.

A journal that cannot be written (the disk) costs the durability of those changes, never the event: ``keep``
logs, counts ``failures`` and returns seq 0 (the change goes through memory as before).

Cost, measured on the 2-core test VM (shared, noisy), SQLite index, webhook and MQTT subscribed: an event's
ingest (so its ack) takes 0.4-0.6 ms longer at p50 and 0.6-4 ms at p99 (600 ingests a run, three runs,
alternating with unjournalled ones); one append alone is 0.25 ms p50 / 0.39 ms p99 (an fsynced commit). Through a
real store's /ingest the open event reached MQTT in 12 / 26 ms (p50 / p99) and the webhook in 10 / 21 ms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from store.ingest.events import RowChange
from store.notify.outbox import Outbox, OutboxPut

log = logging.getLogger(__name__)

PAGE = 500  # records read at a time when replaying
STALE_S = 120.0  # a record appended this long ago and never reported nor abandoned no longer holds ``through`` back

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order of the changes; never reused (AUTOINCREMENT)
    change TEXT NOT NULL,                   -- new | update | ended | labelled
    event_id INTEGER,                       -- the events row; NULL for new (read back by its key)
    camera TEXT, start_us INTEGER, kind TEXT,  -- the row's key (events' UNIQUE (camera, start_us, kind))
    put_us INTEGER NOT NULL                 -- when it was appended (wall clock, µs)
);
CREATE TABLE IF NOT EXISTS journal_marks (
    subscriber TEXT PRIMARY KEY,            -- webhooks, mqtt
    seq INTEGER NOT NULL                    -- every record up to it is in this subscriber's outbox targets
);
"""


@dataclass(frozen=True)
class Replayed:
    """A record read back at start: the feed publishes the row it names (gone: nothing)."""

    seq: int
    event_id: int | None  # None: no such row (a new whose insert never committed, or deleted since)
    new: bool


class ChangeJournal:
    def __init__(self, outbox: Outbox, last_seq: int, marks: dict[str, int]) -> None:
        self.outbox = outbox
        self.last_seq = last_seq  # the highest seq appended, ever
        self.marks = marks  # subscriber -> its mark (as in the file, or as it will be written)
        self.subscribers: set[str] = set()  # those of this process (``subscribe``): the lowest of their marks trims
        self.failures = 0  # appends that failed (their changes went through memory only)
        self._outstanding: dict[int, float] = {}  # seq -> monotonic time appended; not yet reported nor abandoned
        self._trimmed = 0  # records up to this are deleted

    @classmethod
    async def open(cls, outbox: Outbox) -> ChangeJournal:
        async def read(conn: aiosqlite.Connection) -> tuple[int, dict[str, int]]:
            await conn.executescript(_SCHEMA)
            async with conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'") as cur:
                row = await cur.fetchone()
            async with conn.execute("SELECT subscriber, seq FROM journal_marks") as cur:
                marks = {str(name): int(seq) for name, seq in await cur.fetchall()}
            return (int(row[0]) if row is not None else 0), marks

        last_seq, marks = await outbox.transact(read)
        return cls(outbox, last_seq, marks)

    # ---- appending (the parts that change event rows, before their commit) ----

    async def keep(self, changes: Sequence[RowChange]) -> tuple[int, ...]:
        """Append the changes about to be committed; their seqs, on disk when this returns (0 each if the journal
        could not be written: logged, never raised)."""
        if not changes:
            return ()
        now = time.time_ns() // 1000

        async def append(conn: aiosqlite.Connection) -> tuple[int, ...]:
            seqs = []
            for change in changes:
                cur = await conn.execute(
                    "INSERT INTO journal (change, event_id, camera, start_us, kind, put_us) VALUES (?,?,?,?,?,?)",
                    (change.change, change.event_id, change.camera, change.start_us, change.kind, now))
                assert cur.lastrowid is not None
                seqs.append(int(cur.lastrowid))
            return tuple(seqs)

        try:
            seqs = await self.outbox.transact(append)
        except Exception:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.exception("notify: could not journal an event change (%d so far); its notification is in "
                              "memory until it is queued, as if the store had no journal", self.failures)
            return (0,) * len(changes)
        self.last_seq = max(self.last_seq, *seqs)
        appended = time.monotonic()
        for seq in seqs:
            self._outstanding[seq] = appended
        return seqs

    async def labelled(self, event_id: int) -> int:
        """``keep`` for the detector: its labels or snapshot about to be written."""
        (seq,) = await self.keep([RowChange("labelled", event_id)])
        return seq

    def abandon(self, seqs: Iterable[int]) -> None:
        """Their commit failed (rolled back): nothing will report them. Their records stay until every mark passes
        them (a replay of one publishes the row as it is)."""
        for seq in seqs:
            self._outstanding.pop(seq, None)

    # ---- the feed ----

    def reported(self, seq: int) -> int:
        """The feed is publishing ``seq``'s change: the ``through`` its batch carries."""
        self._outstanding.pop(seq, None)
        if not self._outstanding:
            return self.last_seq
        stale = time.monotonic() - STALE_S
        for old in [s for s, at in self._outstanding.items() if at < stale]:
            log.warning("notify: journal record %d was appended %.0f s ago and never reported; no longer waiting "
                        "for it", old, STALE_S)
            del self._outstanding[old]
        return min(self._outstanding, default=self.last_seq + 1) - 1

    def subscribe(self, name: str) -> int:
        """A subscriber of this process: its mark (a new one starts at the last record: it gets what comes next)."""
        self.subscribers.add(name)
        return self.marks.setdefault(name, self.last_seq)

    async def settle(self) -> None:
        """Once this process's subscribers subscribed: their marks on disk, and the marks of subscribers it no
        longer has gone (``--mqtt`` dropped at a restart must not keep every record forever)."""
        for name in [n for n in self.marks if n not in self.subscribers]:
            log.info("notify: %s no longer follows the event changes; its journal mark (%d) is forgotten", name,
                     self.marks.pop(name))
        marks = sorted(self.marks.items())

        async def write(conn: aiosqlite.Connection) -> None:
            await conn.execute("DELETE FROM journal_marks")
            await conn.executemany("INSERT INTO journal_marks (subscriber, seq) VALUES (?, ?)", marks)

        await self.outbox.transact(write)

    async def replay(self, index: aiosqlite.Connection, until: int) -> AsyncIterator[Replayed]:
        """The records above the lowest mark of this process's subscribers, up to ``until`` (the last appended
        before any new change could be), oldest first, with their rows' ids looked up in ``index``."""
        after = min((self.marks[s] for s in self.subscribers), default=until)
        while after < until:
            async def page(conn: aiosqlite.Connection, after: int = after) -> list[Any]:
                async with conn.execute("SELECT seq, change, event_id, camera, start_us, kind FROM journal WHERE "
                                        "seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (after, until, PAGE)) as cur:
                    return list(await cur.fetchall())

            rows = await self.outbox.transact(page)
            if not rows:
                return
            for seq, change, event_id, camera, start_us, kind in rows:
                if event_id is None:
                    async with index.execute("SELECT id FROM events WHERE camera = ? AND start_us = ? AND kind = ?",
                                             (camera, start_us, kind)) as cur:
                        found = await cur.fetchone()
                    event_id = None if found is None else found[0]
                yield Replayed(int(seq), None if event_id is None else int(event_id), change == "new")
            after = int(rows[-1][0])

    # ---- subscribers ----

    async def passed(self, subscriber: str, through: int, items: Sequence[OutboxPut]) -> None:
        """Put ``items`` in the outbox and raise ``subscriber``'s mark to ``through``, in one transaction; records
        every subscriber has now passed are deleted in it too."""
        mark = max(self.marks.get(subscriber, 0), through)
        lowest = 0

        async def also(conn: aiosqlite.Connection) -> None:
            nonlocal lowest
            await conn.execute("INSERT INTO journal_marks (subscriber, seq) VALUES (?, ?) ON CONFLICT (subscriber) "
                               "DO UPDATE SET seq = excluded.seq", (subscriber, mark))
            # Under the outbox's lock: the other subscribers' marks as their committed transactions left them.
            marks = {**self.marks, subscriber: mark}
            lowest = min((marks[s] for s in self.subscribers if s in marks), default=mark)
            if lowest > self._trimmed:
                await conn.execute("DELETE FROM journal WHERE seq <= ?", (lowest,))

        await self.outbox.put_many(items, also)
        self.marks[subscriber] = mark  # no await since the commit: the next transaction sees it
        self._trimmed = max(self._trimmed, lowest)

    async def count(self) -> int:
        """Records kept now (for tests and /health)."""
        async def read(conn: aiosqlite.Connection) -> int:
            async with conn.execute("SELECT COUNT(*) FROM journal") as cur:
                row = await cur.fetchone()
            return int(row[0]) if row is not None else 0

        return await self.outbox.transact(read)
