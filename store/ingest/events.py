"""Taking in an event from a node: one row per (camera, start_us, kind), created open or closed, then updated.

A v3 node sends a motion event when it starts (``open``) and again when it ends; an older node only at the
end. So an event's row is an upsert:

- no row yet: inserted (open or closed, as the message says);
- a row still open: updated: ``end_us`` and ``score`` only grow, bbox/thumb/detail are the newer message's,
  and ``open`` is the message's (closing it, for good, or keeping it open);
- a closed row: the message is a duplicate (a resend, or an open event that arrived late) and changes nothing.

A camera has one motion event going at a time, so a newer one ends any older row of the camera still open
(``open = 2``, "ended as far as the store knows"): the node that opened it crashed or restarted and will never
close it. Such a row still takes its node's own close if that comes after all (open events overtake the
upload queue, so the next event's start can arrive before the previous one's end). The same holds for a
camera's ``camera-stalled`` events (one stall at a time: a node that lost its spool mid-stall, or moved to
another store, never closes the first); a segment of the camera that starts after a stall began ends it too
(its frames came again: store/index/db.py ``insert_segment``).

Every change is reported to an observer (``EventNotice``) after its commit: the store's object detection
starts watching a camera when one of its motion events opens. Before the commit, a ``ChangeKeeper`` (the notify
change journal, store/notify/journal.py) may be given the rows about to change: it keeps them on disk, so a store
killed between the commit and the notification still notifies them when it starts again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import aiosqlite

from shared.protocol.ingest import OPEN_KINDS, Ack, EventRecord
from store.index.db import transaction

CLOSED, OPEN, ENDED_BY_STORE = 0, 1, 2  # events.open (store/index/schema.sql)


@dataclass(frozen=True)
class RowChange:
    """An events row about to change, as the change journal keeps it (store/notify/journal.py)."""

    change: str  # new (inserted) | update (the message's row) | ended (an older open row ended) | labelled
    event_id: int | None  # None for new: the id comes with the insert
    camera: str | None = None  # new: the row's key
    start_us: int | None = None
    kind: str | None = None


class ChangeKeeper(Protocol):
    async def keep(self, changes: Sequence[RowChange]) -> tuple[int, ...]:
        """Keep the changes durably before their commit; a sequence number each (0: not kept)."""

    def abandon(self, seqs: Sequence[int]) -> None:
        """Their commit failed: they will not be reported."""


@dataclass(frozen=True)
class EventIngest:
    ack: Ack
    event_id: int  # the events row (the API's event id)
    changed: bool  # the row was inserted or updated
    new: bool  # the row was inserted
    ended: tuple[int, ...] = ()  # older open rows of the camera the store ended (open = 2) for it
    journal: tuple[int, ...] = ()  # the keeper's seqs of (*ended, the row), when it was given one and it changed


@dataclass(frozen=True)
class EventNotice:
    """An event row that changed (``new``: was inserted), for ``IngestSessions.on_event``; ``record`` is the
    message that changed it (its times, score and bbox are the message's, not the merged row's)."""

    event_id: int
    record: EventRecord
    new: bool
    ended: tuple[int, ...] = ()  # rows the store ended for it (``EventIngest.ended``)
    journal: tuple[int, ...] = ()  # ``EventIngest.journal``: the change feed publishes them under these seqs


async def ingest_event(conn: aiosqlite.Connection, record: EventRecord,
                       keeper: ChangeKeeper | None = None) -> EventIngest:
    """Insert or update the event's row. ``keeper``: given the rows about to change inside the transaction,
    before its commit (so before the node's ack); told to abandon them if the transaction fails."""
    kept: list[int] = []
    try:
        taken = await _ingest(conn, record, keeper, kept)
    except BaseException:
        if keeper is not None and kept:
            keeper.abandon(kept)
        raise
    return replace(taken, journal=tuple(kept)) if kept else taken


async def _ingest(conn: aiosqlite.Connection, record: EventRecord, keeper: ChangeKeeper | None,
                  kept: list[int]) -> EventIngest:
    box = record.bbox or (None, None, None, None)
    async with transaction(conn):
        async with conn.execute("SELECT id, open FROM events WHERE camera = ? AND start_us = ? AND kind = ?",
                                (record.camera, record.start_us, record.kind)) as cur:
            row = await cur.fetchone()
        if row is None:
            ended: tuple[int, ...] = ()
            if record.kind in OPEN_KINDS:  # motion, camera-stalled: one at a time per camera
                async with conn.execute("SELECT id FROM events WHERE camera = ? AND kind = ? AND open = ? "
                                        "AND start_us < ?", (record.camera, record.kind, OPEN, record.start_us)) as cur:
                    ended = tuple(int(r[0]) for r in await cur.fetchall())  # for the change feed (store/notify)
            if keeper is not None:
                kept += await keeper.keep([*(RowChange("ended", ended_id) for ended_id in ended),
                                           RowChange("new", None, record.camera, record.start_us, record.kind)])
            # By id: exactly the rows reported ended (another store sharing the index may insert meanwhile).
            await conn.executemany("UPDATE events SET open = ? WHERE id = ? AND open = ?",
                                   [(ENDED_BY_STORE, ended_id, OPEN) for ended_id in ended])
            cur = await conn.execute(
                "INSERT INTO events (camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, bbox_h, "
                "thumb_us, detail, open) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.camera, record.node, record.start_us, record.end_us, record.kind, record.score, *box,
                 record.thumb_us, record.detail, int(record.open)),
            )
            assert cur.lastrowid is not None
            return EventIngest(Ack(record.record_id), cur.lastrowid, changed=True, new=True, ended=ended)
        event_id, state = int(row[0]), int(row[1])
        if state == CLOSED or (state == ENDED_BY_STORE and record.open):
            return EventIngest(Ack(record.record_id, duplicate=True), event_id, changed=False, new=False)
        if keeper is not None:
            kept += await keeper.keep([RowChange("update", event_id)])
        # A message without a bbox or thumb (an early open one) keeps what the row has.
        await conn.execute(
            "UPDATE events SET end_us = MAX(end_us, ?), score = MAX(score, ?), bbox_x = COALESCE(?, bbox_x), "
            "bbox_y = COALESCE(?, bbox_y), bbox_w = COALESCE(?, bbox_w), bbox_h = COALESCE(?, bbox_h), "
            "thumb_us = COALESCE(?, thumb_us), detail = ?, open = ? WHERE id = ?",
            (record.end_us, record.score, *box, record.thumb_us, record.detail, int(record.open), event_id),
        )
    return EventIngest(Ack(record.record_id), event_id, changed=True, new=False)
