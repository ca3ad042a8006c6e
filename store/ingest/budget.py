"""How many bytes of not-yet-verified segments ingest may hold at once: store-wide and per node.

A segment's declared size is reserved, all at once, before its payload is read;
it is released when the segment is stored or refused. A connection that waits
for a reservation holds nothing, so waiters cannot deadlock one another, and its
unread frames stay in the kernel (websockets stops reading when its frame queue
is full). Reservations are granted first come, first served within each budget,
and a node waits for its own budget before it queues for the store's, so one
node that holds its whole share never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared.protocol.ingest import MAX_SEGMENT_BYTES

DEFAULT_TOTAL_BYTES = 512 * 1024 * 1024
DEFAULT_PER_NODE_BYTES = MAX_SEGMENT_BYTES  # a node sends one segment at a time; one of the largest must fit


class BudgetWaitExpired(Exception):
    """A reservation was not granted in time; nothing is held."""


class ByteBudget:
    """An all-or-nothing, first-come-first-served byte semaphore."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"a byte budget needs a positive capacity, got {capacity}")
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, size: int) -> None:
        if not 0 <= size <= self.capacity:
            raise ValueError(f"cannot reserve {size} bytes of a {self.capacity}-byte budget")
        if not self._waiters and self.used + size <= self.capacity:
            self.used += size
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, granted)
        self._waiters.append(entry)
        try:
            await granted
        except BaseException:
            if granted.done() and not granted.cancelled():
                self.release(size)  # granted just as the waiter gave up: hand it on
            else:
                # Still queued, or already skipped by ``_grant`` (cancelled before this task resumed).
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._grant()  # a large waiter leaving may let smaller ones behind it in
            raise

    def release(self, size: int) -> None:
        self.used -= size
        assert self.used >= 0, "released more than was reserved"
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, granted = self._waiters[0]
            if granted.done():  # its waiter was cancelled and has not resumed yet: nothing to grant it
                self._waiters.popleft()
                continue
            if self.used + size > self.capacity:
                break
            self._waiters.popleft()
            self.used += size
            granted.set_result(None)


@dataclass
class BudgetStats:
    reserved_bytes: int
    waiting: int
    nodes: int


class IngestBudget:
    """The store-wide budget and one per node (created when a node first reserves, dropped when idle)."""

    def __init__(self, total_bytes: int = DEFAULT_TOTAL_BYTES,
                 per_node_bytes: int = DEFAULT_PER_NODE_BYTES) -> None:
        if per_node_bytes > total_bytes:
            raise ValueError(f"the per-node ingest budget ({per_node_bytes}) exceeds the total ({total_bytes})")
        self.total = ByteBudget(total_bytes)
        self.per_node_bytes = per_node_bytes
        self._nodes: dict[str, tuple[ByteBudget, int]] = {}  # node -> (its budget, users)

    @contextlib.asynccontextmanager
    async def reserve(self, node: str, size: int, wait_s: float | None = None) -> AsyncIterator[None]:
        """Hold ``size`` bytes of ``node``'s budget and of the store's for the ``async with`` body.

        Raises ``BudgetWaitExpired`` when they are not granted within ``wait_s`` (then nothing is held).
        """
        budget, users = self._nodes.get(node, (ByteBudget(self.per_node_bytes), 0))
        self._nodes[node] = (budget, users + 1)
        try:
            try:
                async with asyncio.timeout(wait_s):
                    await budget.acquire(size)
                    try:
                        await self.total.acquire(size)
                    except BaseException:
                        budget.release(size)
                        raise
            except TimeoutError:
                raise BudgetWaitExpired(f"{size} bytes not granted in {wait_s} s") from None
            try:
                yield
            finally:
                self.total.release(size)
                budget.release(size)
        finally:
            budget, users = self._nodes[node]
            if users == 1:
                del self._nodes[node]
            else:
                self._nodes[node] = (budget, users - 1)

    def stats(self) -> BudgetStats:
        waiting = self.total.waiting + sum(b.waiting for b, _ in self._nodes.values())
        return BudgetStats(self.total.used, waiting, len(self._nodes))
