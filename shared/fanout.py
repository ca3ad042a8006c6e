"""Fan-out of one camera's access units to many subscribers without copying or waiting (node and relay).

Each access unit is wrapped once in its live frame message (header + Annex-B);
every subscriber's queue holds a reference to that same ``bytes`` object. A
subscriber that cannot keep up has its backlog discarded and waits for the next
keyframe, so it always resumes on something decodable and the publisher never
blocks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from shared.protocol.live import FRAME_HEADER, encode_frame


@dataclass(frozen=True, slots=True)
class AccessUnit:
    capture_us: int
    keyframe: bool
    message: bytes  # the live frame: 12-byte header + Annex-B, shared by all subscribers

    @classmethod
    def build(cls, capture_us: int, keyframe: bool, data: bytes) -> AccessUnit:
        return cls(capture_us, keyframe, encode_frame(capture_us, keyframe, data))

    @property
    def data(self) -> memoryview:
        """The Annex-B access unit, as a view into the shared message (no copy)."""
        return memoryview(self.message)[FRAME_HEADER.size :]


END_OF_STREAM = None


class Subscription:
    """One consumer's bounded queue. Starts, and restarts after overflow, on a keyframe."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = max(1, capacity)
        self._queue: deque[AccessUnit | None] = deque()
        self._ready = asyncio.Event()
        self.waiting_for_keyframe = True
        self.delivered = 0
        self.skipped = 0  # units this subscriber never got because it fell behind
        self.overflows = 0  # times its queue filled up and was dropped (the adaptive policy's sign of a stall)
        self.closed = False

    def offer(self, unit: AccessUnit) -> None:
        if self.closed:
            return
        if self.waiting_for_keyframe:
            if not unit.keyframe:
                self.skipped += 1
                return
            self.waiting_for_keyframe = False
        elif len(self._queue) >= self.capacity:
            self.overflows += 1
            self.skipped += len(self._queue)
            self._queue.clear()
            if not unit.keyframe:
                self.waiting_for_keyframe = True
                self.skipped += 1
                return
        self._queue.append(unit)
        self._ready.set()

    def end(self) -> None:
        """No more units will come (the camera stopped)."""
        self._queue.append(END_OF_STREAM)
        self._ready.set()

    async def get(self) -> AccessUnit | None:
        """Next unit, or ``None`` once the stream has ended."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        unit = self._queue.popleft()
        if unit is not None:
            self.delivered += 1
        return unit

    @property
    def backlog(self) -> int:
        return len(self._queue)


class FanOut:
    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.ended = False

    def subscribe(self, name: str, capacity: int) -> Subscription:
        sub = Subscription(name, capacity)
        if self.ended:
            sub.end()
        else:
            self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        self.subscriptions.discard(sub)

    def publish(self, unit: AccessUnit) -> None:
        for sub in self.subscriptions:
            sub.offer(unit)

    def end(self) -> None:
        self.ended = True
        for sub in self.subscriptions:
            sub.end()
