"""Open WebSocket sessions by the token that opened them, so a revocation ends what is already open."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Collection

from websockets.asyncio.server import ServerConnection

from shared.auth import Claims
from shared.server.routes import endpoint_path

log = logging.getLogger(__name__)


class ConnectionRegistry:
    """The handshake checks a token once; this remembers whose token each open connection showed."""

    def __init__(self) -> None:
        # Weak: a connection that ends drops out by itself.
        self._claims: weakref.WeakKeyDictionary[ServerConnection, Claims] = weakref.WeakKeyDictionary()

    def add(self, connection: ServerConnection, claims: Claims) -> None:
        self._claims[connection] = claims

    def __len__(self) -> int:
        return len(self._claims)

    def close_revoked(self, token_ids: Collection[str]) -> int:
        """Close (1008) every open connection whose token is in ``token_ids``; how many were closed."""
        closed = 0
        for connection, claims in list(self._claims.items()):
            if claims.token_id in token_ids:
                path = endpoint_path(connection.request.path) if connection.request else "connection"
                log.warning("closing %s's %s: token %s was revoked", claims.subject, path, claims.token_id)
                asyncio.get_running_loop().create_task(connection.close(1008, "token revoked"))
                del self._claims[connection]
                closed += 1
        return closed
