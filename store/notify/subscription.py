"""One subscriber's view of the change feed (store/notify/changes.py): its changes in order, in batches that carry
the change journal's position (store/notify/journal.py), and the put that records it with the outbox items.

A subscriber that keeps what it is handed (the webhooks' router, the MQTT bridge)::

    subscription = feed.subscribe("mqtt")            # before the feed starts: replayed changes are its too
    async for batch in subscription.batches():       # ends when the feed closes
        items = [(target, change.body(), meta) for change in batch.changes]   # what it makes of them (maybe none)
        await subscription.put(outbox, batch, items)  # the items and its journal mark, in one transaction

Anyone else may read the changes one by one: ``async for change in subscription``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.notify.changes import EventChange
    from store.notify.outbox import Outbox, OutboxPut

log = logging.getLogger(__name__)

SUBSCRIBER_BACKLOG = 10_000  # batches a subscriber has not taken yet; past that the oldest go (counted)


@dataclass(frozen=True)
class Batch:
    """What one reported row change became: its changes, in order (none: nothing a subscriber would see changed;
    two: ``new`` and ``end`` of an event heard of once it was over), and where the journal stands."""

    changes: tuple[EventChange, ...]
    seq: int = 0  # its journal record (0: none)
    through: int = 0  # every journal record up to this one is published once this batch is
    replayed: bool = False  # read back from the journal at start


class Subscription:
    """One subscriber's batches, in order."""

    def __init__(self, name: str, feed: Any, mark: int = 0) -> None:
        """``feed``: the ChangeFeed (its ``journal`` and ``unsubscribe``); ``mark``: the subscriber's journal mark
        (replayed batches up to it are not handed over: it put them before the store stopped)."""
        self.name = name
        self.mark = mark
        self.dropped = 0  # changes that overflowed its backlog
        self._feed = feed
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._changes: deque[EventChange] = deque()  # the rest of the batch read change by change
        self._closed = False

    def offer(self, batch: Batch) -> None:
        """From the feed: queue the batch (unless it is a replayed one this subscriber has already put)."""
        if batch.replayed and batch.seq <= self.mark:
            return
        if self._queue.qsize() >= SUBSCRIBER_BACKLOG:
            lost = self._queue.get_nowait()
            before = self.dropped
            self.dropped += len(lost.changes) if lost is not None else 0
            if self.dropped > before and (before == 0 or before // 1000 != self.dropped // 1000):
                log.error("notify: subscriber %s is %d changes behind; the oldest are dropped (%d so far)",
                          self.name, SUBSCRIBER_BACKLOG, self.dropped)
        self._queue.put_nowait(batch)

    def close(self) -> None:
        self._closed = True
        self._queue.put_nowait(None)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def next_batch(self) -> Batch | None:
        """The next batch, or None once the feed closed (then always None)."""
        batch = await self._queue.get()
        if batch is None:
            self._queue.put_nowait(None)
            self._feed.unsubscribe(self)
        return batch

    async def batches(self) -> AsyncIterator[Batch]:
        while (batch := await self.next_batch()) is not None:
            yield batch

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EventChange:
        while not self._changes:
            batch = await self.next_batch()
            if batch is None:  # the feed closed: this and any later iteration end here
                raise StopAsyncIteration
            self._changes.extend(batch.changes)
        return self._changes.popleft()

    async def put(self, outbox: Outbox, batch: Batch, items: Sequence[OutboxPut]) -> None:
        """Put ``items`` (what this subscriber makes of ``batch``) in the outbox; with a journal, the subscriber's
        mark passes the batch in the same transaction (a kill after it replays nothing to it, one before it
        replays the batch). A batch that makes nothing moves the mark lazily: with the next batch if one waits."""
        journal = self._feed.journal
        if journal is None or batch.through <= self.mark:
            if items:
                await outbox.put_many(items)
            return
        if not items and self.backlog and not self._closed:
            return
        await journal.passed(self.name, batch.through, items)
        self.mark = batch.through
