"""A server's endpoints, each declared once: its path, who may use it, and what answers it.

The 404 text and the role table are read from the same declarations, so they
cannot drift from what the server really serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from shared.auth import Audience, Claims
from shared.request_target import request_path
from shared.server.streamed import Later, Streamed

# A plain HTTP answer (``/health``, ``/metrics``, ``/key``, ``/``), sync or async; or a body too big for memory,
# sent in chunks (``Streamed``), or an answer too slow to make inside websockets' handshake (``Later``): /recordings.
HttpResponder = Callable[[ServerConnection, Request],
                         Response | Streamed | Later | Awaitable[Response | Streamed | Later]]
# A WebSocket session, from the handshake's end until the connection closes.
SessionHandler = Callable[[ServerConnection, Claims | None], Awaitable[None]]
# Refuses a WebSocket handshake (e.g. 404 for an unknown camera) after authentication, or lets it through.
HandshakeCheck = Callable[[ServerConnection, Request], Response | None]


def endpoint_path(target: str) -> str:
    """The path of a request target, without query or fragment: ``/live/c0?x`` and ``/live/c0#f`` → ``/live/c0``;
    %-escapes decoded once, a trailing slash ignored, dot segments refused (``BadTarget``, a 400): the rules of
    ``shared.request_target.request_path``.

    The one parser every server uses, so node, store and relay agree on what a request asked for.
    """
    return request_path(target)


@dataclass(frozen=True)
class Route:
    """``path`` is exact (``/api``) or a prefix ending in a placeholder (``/live/{camera}``)."""

    path: str
    audience: Audience
    respond: HttpResponder | None = None
    session: SessionHandler | None = None
    max_message_bytes: int = 0  # WebSocket routes: the largest message a client may send
    check: HandshakeCheck | None = None
    max_fragment_bytes: int | None = None  # WebSocket routes: the largest frame, if less than a message
    # WebSocket routes: headers of the accepted handshake's response (/ingest says its protocol version)
    response_headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if (self.respond is None) == (self.session is None):
            raise ValueError(f"route {self.path}: give either an HTTP responder or a WebSocket session")
        if self.session is not None and self.max_message_bytes <= 0:
            raise ValueError(f"route {self.path}: a WebSocket route needs a max message size")
        if self.respond is not None and (self.check is not None or self.response_headers):
            raise ValueError(f"route {self.path}: a handshake check or response headers are for WebSocket routes")
        if not self.path.startswith("/") or ("{" in self.path and not self.path.endswith("}")):
            raise ValueError(f"route {self.path}: a path starts with / and a placeholder ends it")

    @property
    def prefix(self) -> str | None:
        """``/live/`` for ``/live/{camera}``; None for an exact path."""
        return self.path[:self.path.index("{")] if "{" in self.path else None

    def matches(self, path: str) -> bool:
        prefix = self.prefix
        return path.startswith(prefix) if prefix is not None else path == self.path


def http_route(path: str, audience: Audience, respond: HttpResponder) -> Route:
    return Route(path, audience, respond=respond)


def websocket_route(path: str, audience: Audience, session: SessionHandler, max_message_bytes: int,
                    check: HandshakeCheck | None = None, max_fragment_bytes: int | None = None,
                    response_headers: Mapping[str, str] | None = None) -> Route:
    return Route(path, audience, session=session, max_message_bytes=max_message_bytes, check=check,
                 max_fragment_bytes=max_fragment_bytes, response_headers=tuple((response_headers or {}).items()))


class RouteTable:
    def __init__(self, routes: Iterable[Route], note: str = "") -> None:
        self.routes = tuple(routes)
        self.note = note  # said in the 404, e.g. "this is a relay"
        paths = [r.path for r in self.routes]
        if len(set(paths)) != len(paths):
            raise ValueError(f"a path is declared twice: {paths}")

    def match(self, path: str) -> Route | None:
        """The route for a bare path (see ``endpoint_path``); exact paths win over prefixes."""
        exact = next((r for r in self.routes if r.prefix is None and r.path == path), None)
        return exact or next((r for r in self.routes if r.prefix is not None and r.matches(path)), None)

    def not_found(self, path: str) -> str:
        paths = [r.path for r in self.routes]
        choices = paths[0] if len(paths) == 1 else ", ".join(paths[:-1]) + " or " + paths[-1]
        return f"no endpoint {path!r}; {self.note + ': ' if self.note else ''}try {choices}"

    def roles(self) -> dict[str, Audience]:
        """Who may use what, by path: the role table of this server."""
        return {r.path: r.audience for r in self.routes}

    @property
    def max_message_bytes(self) -> int:
        """The listener's limit: the largest any WebSocket route takes (each connection then gets its own)."""
        return max((r.max_message_bytes for r in self.routes if r.session is not None), default=64 * 1024)
