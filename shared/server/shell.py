"""The thin asyncio layer every server runs on: route, authenticate, answer or hand over the WebSocket.

websockets' ``process_request`` hook does the whole handshake decision: an
unknown path is a 404 (derived from the route table), then the token is checked
against the matched route's audience (``shared.auth.AccessControl``: roles,
allowlist, lockout), then an HTTP route answers, or a WebSocket route's check
may refuse (404 for an unknown camera, 400 for a bad query). An accepted
WebSocket gets its route's message (and frame) size limits and its session handler, and is
remembered by token id so that a revocation closes it. An HTTP answer too big for memory (``Streamed``) is
written by a task of the shell's, the connection detached from websockets (shared/server/streamed.py).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import weakref
from collections.abc import Callable
from http import HTTPStatus

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from shared.auth import AccessControl, AuthError, Claims
from shared.httpjson import error_response
from shared.request_target import BadTarget
from shared.server.connections import ConnectionRegistry
from shared.server.routes import Route, RouteTable, endpoint_path
from shared.server.streamed import Later, Streamed, detach, send, send_later

log = logging.getLogger(__name__)

# websockets' per-frame limit (``Protocol.max_fragment_size``) arrived in 16.0; before, the assignment in
# ``_handshake`` creates an attribute nobody reads, and a route's frame limit (``/ingest``: 1 MiB, so garbage
# is refused before it is buffered) would silently not hold.
FRAME_LIMITS = int(websockets.version.version.split(".")[0]) >= 16


class ServerShell:
    def __init__(self, routes: RouteTable, access: AccessControl,
                 tokens_uncheckable: Callable[[], str | None] | None = None) -> None:
        """``tokens_uncheckable``: why tokens cannot be checked yet (the node before it has the store's key):
        routes that need a token then answer 503 with that reason."""
        self.routes = routes
        self.access = access
        self.tokens_uncheckable = tokens_uncheckable
        self.connections = ConnectionRegistry()
        self.server: Server | None = None
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, tuple[Route, Claims | None]] = \
            weakref.WeakKeyDictionary()
        self._streams: set[asyncio.Task[int]] = set()  # Streamed answers being written (shared/server/streamed.py)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        if not FRAME_LIMITS and any(r.max_fragment_bytes is not None for r in self.routes.routes):
            raise RuntimeError(f"websockets {websockets.version.version} cannot limit a frame's size, which "
                               f"{', '.join(r.path for r in self.routes.routes if r.max_fragment_bytes)} needs: "
                               "install websockets 16 or later")
        self.server = await serve(
            self._session, host, port, process_request=self._handshake,
            max_size=self.routes.max_message_bytes,  # lowered per connection to its route's limit
            compression=None,  # H.264 and JSON this small do not compress enough to pay for the CPU
            ssl=ssl_context, process_response=self._response,
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for task in list(self._streams):
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def close_revoked(self, token_ids: frozenset[str]) -> int:
        return self.connections.close_revoked(token_ids)

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            path = endpoint_path(request.path)
        except BadTarget as exc:  # a bad %-escape or a dot segment: the same 400 on every server
            return error_response(connection, HTTPStatus.BAD_REQUEST, str(exc))
        route = self.routes.match(path)
        if route is None:
            return error_response(connection, HTTPStatus.NOT_FOUND, self.routes.not_found(path))
        if self.tokens_uncheckable is not None and self.access.needs_token(route.audience):
            reason = self.tokens_uncheckable()
            if reason is not None:
                return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, reason)
        address = connection.remote_address[0]
        try:
            claims = self.access.check(request.path, route.path, route.audience,
                                       request.headers.get("Authorization"), address)
        except AuthError as exc:
            log.warning("refused %s from %s: %s", path, address, exc.reason)
            return error_response(connection, exc.status, exc.reason)
        if route.respond is not None:
            answer = route.respond(connection, request)
            answer = await answer if inspect.isawaitable(answer) else answer
            if isinstance(answer, (Streamed, Later)):
                return self._stream(connection, answer, request.method == "HEAD")
            return answer
        if route.check is not None and (refusal := route.check(connection, request)) is not None:
            return refusal
        self._accepted[connection] = (route, claims)
        # Before the first frame can be parsed (the handshake is not answered yet), not in the session task.
        connection.protocol.max_message_size = route.max_message_bytes
        connection.protocol.max_fragment_size = route.max_fragment_bytes
        if claims is not None:
            self.connections.add(connection, claims)  # so a revocation can end a session already open
        return None

    def _stream(self, connection: ServerConnection, answer: Streamed | Later, head_only: bool) -> Response:
        """Make and write an answer from a task of its own, outside websockets' handshake and its timeout; the
        Response returned is never sent (the connection is detached: shared/server/streamed.py). ``head_only``:
        a HEAD request gets the status line and headers alone."""
        transport, pipe = detach(connection)
        sending = (send(transport, pipe, answer, head_only) if isinstance(answer, Streamed)
                   else send_later(transport, pipe, answer, head_only))
        task = asyncio.create_task(sending, name="http-stream")
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return connection.protocol.reject(HTTPStatus.OK, "")

    def _response(self, connection: ServerConnection, _: Request, response: Response) -> None:
        """An accepted WebSocket handshake's response gets its route's headers (e.g. /ingest's version)."""
        accepted = self._accepted.get(connection)
        if accepted is not None and response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
            for name, value in accepted[0].response_headers:
                response.headers[name] = value

    async def _session(self, connection: ServerConnection) -> None:
        route, claims = self._accepted.pop(connection)
        assert route.session is not None
        try:
            await route.session(connection, claims)
        except websockets.ConnectionClosed:
            pass
