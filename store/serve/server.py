"""The store's network face: ``/ingest``, ``/control`` and ``/api`` (WebSocket), ``GET /health``.

Thin: the framing of each endpoint is a sans-I/O class in ``shared.protocol``;
this module only moves messages between it, the socket and the store's logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import weakref
from http import HTTPStatus
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from shared.auth import AccessControl, AuthError, Claims, public_pem
from shared.clock import now_us
from shared.fmp4_live import LIVE_PREFIX, live_target, stream_choice
from shared.httpjson import error_response, json_response
from shared.metrics import metrics_response
from shared.protocol.control import (
    HEARTBEAT_INTERVAL_S,
    MAX_CONTROL_BYTES,
    Heartbeat,
    Hello,
    Revocations,
    SettingsPush,
    parse_control,
)
from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import MAX_HEADER_BYTES, MAX_SEGMENT_BYTES, Ack, EventRecord, IngestReceiver, Refusal
from shared.protocol.query import MAX_REQUEST_BYTES, QueryServer
from store.admin.keys import KeyStore
from store.index import settings
from store.index.db import Index
from store.ingest.events import ingest_event
from store.ingest.writer import Ingestor
from store.live.relay import Location, Relay, substream_of, web_page
from store.nodes.fleet import Fleet
from store.serve.api import Api
from store.serve.metrics import StoreMetrics

log = logging.getLogger(__name__)
TOTALS_TTL_S = 30.0


class StoreServer:
    def __init__(self, ingestor: Ingestor, index: Index, access: AccessControl | None = None,
                 keys: KeyStore | None = None, ssl_context: ssl.SSLContext | None = None,
                 node_ca: str | None = None) -> None:
        self.ingestor = ingestor
        self.index = index
        self.access = access or AccessControl(None)
        self.keys = keys
        self.ssl_context = ssl_context
        self._claims: weakref.WeakKeyDictionary[ServerConnection, Claims] = weakref.WeakKeyDictionary()
        self._revoked_sent: frozenset[str] = frozenset()
        self._totals: tuple[float, dict[str, dict]] | None = None  # (when, per-camera totals) for /health
        self._totals_ttl_s = 0.0
        self.started = time.monotonic()
        self.server: Server | None = None
        self.fleet = Fleet(index.conn, now_us)
        self.api = Api(ingestor.root, index, self.fleet, on_setting=self.push_settings, revoked=self.revoked)
        self._checker: asyncio.Task | None = None
        self.metrics = StoreMetrics(self)
        # /live/{camera}: one upstream per camera and stream; node_ca verifies nodes that serve TLS
        self.relay = Relay(self._locate, self._relay_token, node_ca=node_ca)
        self._token: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> int:
        await self.fleet.load()
        self._checker = asyncio.create_task(self._check_fleet(), name="fleet-check")
        self.server = await serve(
            self._handle, host, port, process_request=self._route,
            max_size=MAX_SEGMENT_BYTES + MAX_HEADER_BYTES + 64,
            compression=None, ssl=self.ssl_context,
        )
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        self.relay.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _check_fleet(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S / 2)
            try:
                await self._check_fleet_once()
            except Exception:  # e.g. an unreadable revoked.json: log it, keep watching the fleet
                log.exception("fleet check failed")

    async def _check_fleet_once(self) -> None:
        for node in self.fleet.check():
            log.warning("node %s is down: no heartbeat for %.0f s", node, HEARTBEAT_INTERVAL_S * 3)
        revoked = self.revoked()
        if revoked != self._revoked_sent:  # `sht token revoke` ran: tell the nodes now
            self._revoked_sent = revoked
            for connection, claims in list(self._claims.items()):  # and end what those tokens have open here
                if claims.token_id in revoked:
                    log.warning("closing %s's connection: token %s was revoked", claims.subject, claims.token_id)
                    asyncio.get_running_loop().create_task(connection.close(1008, "token revoked"))
            for link in list(self.fleet.links.values()):
                with contextlib.suppress(websockets.ConnectionClosed):
                    await link.send(Revocations(tuple(sorted(revoked))).serialize())

    def _locate(self, camera: str) -> Location:
        node = self.fleet.node_of(camera)
        state = self.fleet.nodes.get(node) if node else None
        if state is None or state.url is None:
            return Location(None, f"no node has announced camera {camera}")
        substream = substream_of(state.health, camera)
        if state.state != "up":
            return Location(None, f"node {state.node} is {state.state}", substream)
        return Location(state.url, substream=substream)

    def _relay_token(self) -> str | None:
        """A short-lived viewer token the store signs for itself; nodes verify it offline like any other."""
        if self.keys is None:
            return None
        if self._token is None or self._token[1] - time.time() < 600:
            token, claims = self.keys.issue("viewer", "store-relay", 3600)
            self._token = (token, claims.expires)
        return self._token[0]

    def revoked(self) -> frozenset[str]:
        return self.keys.revoked() if self.keys is not None else frozenset()

    async def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if not path.startswith(LIVE_PREFIX) and path not in ("/", "/health", "/metrics", "/key", "/ingest",
                                                             "/control", "/api"):
            return error_response(connection, HTTPStatus.NOT_FOUND,
                                  f"no endpoint {path!r}; try /health, /api, /ingest or /control")
        address = connection.remote_address[0]
        try:
            claims = self.access.check(request.path, request.headers.get("Authorization"), address)
        except AuthError as exc:
            log.warning("refused %s from %s: %s", path, address, exc.reason)
            return error_response(connection, exc.status, exc.reason)
        if path == "/health":
            return json_response(connection, HTTPStatus.OK, await self.health())
        if path == "/metrics":
            return metrics_response(connection, self.metrics.registry)
        if path == "/":
            return web_page(connection)
        if path.startswith(LIVE_PREFIX):
            try:
                live_target(request.path, self.fleet.cameras())
                stream_choice(request.path)
            except LookupError as exc:
                return error_response(connection, HTTPStatus.NOT_FOUND, str(exc))
            except ValueError as exc:
                return error_response(connection, HTTPStatus.BAD_REQUEST, str(exc))
        if path == "/key":
            if self.keys is None:
                return error_response(connection, HTTPStatus.NOT_FOUND, "this store runs without authentication")
            return connection.respond(HTTPStatus.OK, public_pem(self.keys.public_key()).decode())
        if claims is not None:
            self._claims[connection] = claims
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path.split("?", 1)[0] if connection.request else ""
        if path.startswith(LIVE_PREFIX) and connection.request:
            connection.protocol.max_message_size = 64 * 1024  # viewers send us nothing of size
            await self.relay.serve(connection, *live_target(connection.request.path),
                                   mode=stream_choice(connection.request.path))
            return
        handler = {"/ingest": self._ingest, "/control": self._control, "/api": self._api}[path]
        # The server's max_size fits a whole segment; the other endpoints only take small JSON.
        if path == "/api":
            connection.protocol.max_message_size = MAX_REQUEST_BYTES
        elif path == "/control":
            connection.protocol.max_message_size = MAX_CONTROL_BYTES
        try:
            await handler(connection)
        except websockets.ConnectionClosed:
            pass

    async def _api(self, connection: ServerConnection) -> None:
        server = QueryServer()
        tasks: set[asyncio.Task] = set()

        async def flush() -> None:
            for out in server.data_to_send():
                await connection.send(out)

        try:
            async for message in connection:
                request = server.receive(message)
                if request is None:
                    await flush()
                    continue
                task = asyncio.create_task(self.metrics.timed_query(
                    request.method, self.api.handle(request, server, flush, self._claims.get(connection))))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()

    async def _control(self, connection: ServerConnection) -> None:
        try:
            first = parse_control(await asyncio.wait_for(connection.recv(), 10))
        except (ProtocolError, TimeoutError) as exc:
            await connection.close(1008, f"expected a hello first: {exc}"[:120])
            return
        if not isinstance(first, Hello):
            await connection.close(1008, "expected a hello first")
            return
        claims = self._claims.get(connection)
        if claims is not None and claims.subject != first.node:
            log.warning("refused control link: node %s with a token for %s", first.node, claims.subject)
            await connection.close(1008, f"token is for node {claims.subject}, not {first.node}"[:120])
            return
        host = connection.remote_address[0]
        await self.fleet.hello(first, host, connection)
        log.info("node %s is up (%s, cameras %s)", first.node, host, ", ".join(first.cameras))
        for camera in first.cameras:
            await self.push_settings(camera)
        await connection.send(Revocations(tuple(sorted(self.revoked()))).serialize())
        try:
            async for message in connection:
                try:
                    event = parse_control(message)
                except ProtocolError as exc:
                    log.warning("node %s sent a bad control message: %s", first.node, exc)
                    continue
                if isinstance(event, Heartbeat):
                    self.fleet.heartbeat(first.node, event.health)
        finally:
            self.fleet.link_closed(first.node, connection)
            log.warning("node %s control link closed", first.node)

    async def push_settings(self, camera: str) -> None:
        """Send a camera's current settings to the node that owns it, if it is connected."""
        node = self.fleet.node_of(camera)
        link: Any = self.fleet.links.get(node) if node else None
        if link is None:
            return
        values = await settings.camera_settings(self.index.conn, camera)
        with contextlib.suppress(websockets.ConnectionClosed):
            await link.send(SettingsPush(camera, values).serialize())

    async def _ingest(self, connection: ServerConnection) -> None:
        receiver = IngestReceiver()
        peer = "{}:{}".format(*connection.remote_address[:2])
        claims = self._claims.get(connection)
        try:
            async for message in connection:
                event = receiver.receive(message)
                node = None if event is None else (event.node if isinstance(event, EventRecord) else event.header.node)
                if event is None:
                    log.warning("refused a malformed message from %s", peer)
                elif claims is not None and node != claims.subject:
                    # A node token speaks for one node: a stolen one cannot forge another node's footage.
                    item = event.record_id if isinstance(event, EventRecord) else event.header.segment_id
                    log.warning("refused %s from %s: sent as node %s with a token for %s", item, peer, node,
                                claims.subject)
                    receiver.refuse(Refusal("node-mismatch", f"this token is for node {claims.subject!r}, not "
                                            f"{node!r}; make one with --subject {node}", item, retry=False))
                elif isinstance(event, EventRecord):
                    ack = await ingest_event(self.index.conn, event)
                    receiver.acknowledge(ack.segment_id, ack.duplicate)
                    if event.kind == "loss" and not ack.duplicate:
                        log.error("node %s reports LOST footage on %s: %s", event.node, event.camera, event.detail)
                else:
                    with self.metrics.ingest_seconds.time():
                        reply = await self.ingestor.ingest(event.header, event.payload)
                    if isinstance(reply, Ack):
                        receiver.acknowledge(reply.segment_id, reply.duplicate)
                    else:
                        log.warning("refused segment from %s: %s", peer, reply.message)
                        receiver.refuse(reply)
                for out in receiver.data_to_send():
                    await connection.send(out)
        except websockets.ConnectionClosed:
            pass

    async def health(self) -> dict:
        stats = self.ingestor.stats
        # Per-camera totals are a GROUP BY over every row (seconds at tens of millions), on the connection
        # ingest commits through: an open /health polled by monitoring must not make ingest wait.
        now = time.monotonic()
        if self._totals is None or now - self._totals[0] > self._totals_ttl_s:
            self._totals = (now, await self.index.camera_totals())
            # Fresh every time while that is cheap (a home store); kept a while once it is not.
            self._totals_ttl_s = TOTALS_TTL_S if time.monotonic() - now > 0.05 else 0.0
        return {
            "service": "store",
            "uptime_s": round(now - self.started, 1),
            "root": str(self.ingestor.root),
            "ingest": {"stored": stats.stored, "duplicates": stats.duplicates,
                       "refused": stats.refused, "bytes_stored": stats.bytes_stored},
            "cameras": self._totals[1],
            "cameras_as_of_s_ago": round(now - self._totals[0], 1),
            "nodes": {n: s.state for n, s in sorted(self.fleet.nodes.items())},
        }
