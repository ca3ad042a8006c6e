"""How many ``/recordings`` answers one client has open at once: a cap, so one viewer cannot hold the store's memory.

Each open answer holds its clip (a day of one camera: ~3 MiB of chunks and their plan) for as long as its
client takes to read it, and a player that is paused stops reading without closing. The layouts kept for reuse
are bounded (``clips.LAYOUTS``, ``clips.LAYOUT_CHUNKS``); those held by answers in flight were not: a viewer
opening a few hundred day-long requests with distinct ranges, never reading, would hold gigabytes. Over the cap a
request is refused at once (503 saying why), never queued, as the API's in-flight caps do (store/serve/in_flight.py).

A client is its token (the same token over any number of connections), or its address when the store takes no
tokens. A slot is taken when the request is read and given back when its answer ends, however it ends: sent
whole, cut by the client leaving or the server closing, refused, or never started (``Held.aclose``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator

from shared.auth import token_from_request

MAX_PER_CLIENT = 32  # /recordings answers open at once per token (a browser's player uses one or two)


def client_of(target: str, authorization: str | None, address: str) -> str:
    """Whom a request counts against: a digest of its token (never the token itself), else its address."""
    token = token_from_request(target, authorization)
    if token is None:
        return f"address {address}"
    return "token " + hashlib.sha256(token.encode()).hexdigest()[:16]


class Slots:
    def __init__(self, per_client: int = MAX_PER_CLIENT) -> None:
        self.per_client = per_client
        self.open: Counter[str] = Counter()

    def take(self, client: str) -> Slot | None:
        """A slot, or None when the client already has ``per_client`` answers open."""
        if self.open[client] >= self.per_client:
            return None
        self.open[client] += 1
        return Slot(self, client)

    def refusal(self, client: str) -> str:
        return (f"{self.open[client]} /recordings answers are already open for this client, the most one may have "
                f"({self.per_client}); close players or downloads you no longer use (a paused player holds one)")


class Slot:
    def __init__(self, slots: Slots, client: str) -> None:
        self.slots, self.client = slots, client
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.slots.open[self.client] -= 1
            if self.slots.open[self.client] <= 0:
                del self.slots.open[self.client]


class Held:
    """A body that gives its slot back when it ends: read to its end, failed, or closed (even unstarted: an async
    generator closed before its first item never runs its own ``finally``)."""

    def __init__(self, body: AsyncIterator[bytes], slot: Slot) -> None:
        self.body, self.slot = body, slot

    def __aiter__(self) -> Held:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.body.__anext__()
        except BaseException:
            self.slot.give_back()
            raise

    async def aclose(self) -> None:
        try:
            await self.body.aclose()  # type: ignore[attr-defined]
        finally:
            self.slot.give_back()
