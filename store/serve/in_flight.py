"""How many ``/api`` requests the store works on at once, per connection and per token.

A client that sends requests without reading the replies (30 exports at once on
one connection) would otherwise get a task, and its memory and temporary files,
for every one. Over a cap the request is refused ``busy`` at once, never queued,
so nothing grows with what a client sends.
"""

from __future__ import annotations

from collections import Counter

from shared.auth import Claims
from shared.protocol.query import MAX_IN_FLIGHT_PER_CONNECTION, MAX_IN_FLIGHT_PER_TOKEN


class InFlight:
    """The store-wide count per token; each connection keeps its own count in a ``ConnectionSlots``."""

    def __init__(self, per_connection: int = MAX_IN_FLIGHT_PER_CONNECTION,
                 per_token: int = MAX_IN_FLIGHT_PER_TOKEN) -> None:
        self.per_connection, self.per_token = per_connection, per_token
        self.by_token: Counter[str] = Counter()

    def connection(self, claims: Claims | None) -> ConnectionSlots:
        return ConnectionSlots(self, claims.token_id if claims is not None else None)


class ConnectionSlots:
    def __init__(self, caps: InFlight, token_id: str | None) -> None:
        self.caps, self.token_id = caps, token_id
        self.count = 0

    def take(self) -> str | None:
        """Take a slot for one request, or say why not (the ``busy`` message: the cap, and what to do)."""
        if self.count >= self.caps.per_connection:
            return (f"{self.count} requests already in flight on this connection, the most one connection may "
                    f"have ({self.caps.per_connection}); wait for their replies before sending more")
        if self.token_id is not None and self.caps.by_token[self.token_id] >= self.caps.per_token:
            return (f"{self.caps.by_token[self.token_id]} requests already in flight with this token over all its "
                    f"connections, the most one token may have ({self.caps.per_token}); wait for their replies "
                    "before sending more")
        self.count += 1
        if self.token_id is not None:
            self.caps.by_token[self.token_id] += 1
        return None

    def give_back(self) -> None:
        self.count -= 1
        if self.token_id is not None:
            self.caps.by_token[self.token_id] -= 1
            if self.caps.by_token[self.token_id] <= 0:
                del self.caps.by_token[self.token_id]
