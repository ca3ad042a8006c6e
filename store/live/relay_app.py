"""``sht relay``: a relay-only process, for spreading many viewers over several processes behind nginx.

It serves ``/live/{camera}`` (plain or ``?format=fmp4``), ``/health`` and
``/metrics``, exactly as the store's relay does, but holds no footage: it
learns where each camera is from the store's ``fleet`` API and the revoked
token ids from its ``revoked`` method (both every ``FLEET_POLL_S``), verifies
viewers' tokens offline with the store's public key (``GET /key``) against
that list, and closes the streams of tokens revoked while they watch, as a
node does. Its own token (a viewer token) is what it shows the store and the
nodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import weakref
from http import HTTPStatus
from typing import Any
from urllib.request import urlopen

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from shared.auth import AccessControl, AuthError, Claims, Verifier, load_public_key
from shared.backoff import Backoff
from shared.fmp4_live import LIVE_PREFIX, live_target, stream_choice
from shared.httpjson import error_response, json_response
from shared.metrics import metrics_response, new_registry
from shared.security import SecurityOptions, bearer, client_ssl
from shared.urls import http_url, ws_url
from store.live.relay import Location, Relay, substream_of
from store.serve.metrics import relay_families

log = logging.getLogger(__name__)
FLEET_POLL_S = 2.0


class RelayProcess:
    def __init__(self, store_url: str, token: str | None, security: SecurityOptions, ca: str | None = None,
                 node_ca: str | None = None) -> None:
        self.store_url, self.token, self.security = store_url, token, security
        self.client_ssl = client_ssl(ws_url(store_url), ca)
        self.cameras: dict[str, tuple[str | None, str, bool | None]] = {}  # camera -> (node URL, state, has sub?)
        self.fleet_error: str | None = "not asked yet"
        self.relay = Relay(self._locate, lambda: self.token, node_ca=node_ca)
        self.access: AccessControl = security.access(None)
        self.registry = new_registry(lambda: relay_families(self.relay))
        self.revoked: frozenset[str] = frozenset()  # token ids, from the store's ``revoked`` API method
        self.revoked_error: str | None = None  # why the list could not be read, if it could not
        self._claims: weakref.WeakKeyDictionary[ServerConnection, Claims] = weakref.WeakKeyDictionary()
        self.started = time.monotonic()
        self.server: Server | None = None
        self._tasks: list[asyncio.Task] = []

    def _locate(self, camera: str) -> Location:
        url, state, substream = self.cameras.get(camera, (None, "unknown", None))
        if url is None or state != "up":
            return Location(None, f"the node of {camera} is {state}" if self.fleet_error is None
                            else f"cannot ask the store where {camera} is: {self.fleet_error}", substream)
        return Location(url, substream=substream)

    async def start(self, host: str, port: int) -> int:
        if self.security.auth:
            self.access.verifier = await self._store_key()
        self._tasks.append(asyncio.create_task(self._poll_fleet(), name="fleet-poll"))
        self.server = await serve(self._handle, host, port, process_request=self._route, max_size=64 * 1024,
                                  compression=None, ssl=self.security.server_ssl())
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.relay.close()
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _store_key(self) -> Verifier:
        url = http_url(self.store_url) + "/key"
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                pem = await asyncio.to_thread(self._get, url)
                log.info("verifying viewer tokens with the store's key from %s", url)
                return Verifier(load_public_key(pem), lambda: self.revoked)
            except (OSError, ValueError) as exc:
                delay = backoff.next_delay()
                log.warning("cannot get the store's key from %s (%s); retrying in %.1f s", url, exc, delay)
                await asyncio.sleep(delay)

    def _get(self, url: str) -> bytes:
        with urlopen(url, timeout=5, context=self.client_ssl) as reply:  # noqa: S310 - the configured store
            return bytes(reply.read())

    async def _poll_fleet(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                async with connect(ws_url(self.store_url) + "/api", additional_headers=bearer(self.token),
                                   ssl=self.client_ssl, max_size=8 * 2**20, open_timeout=5) as ws:
                    for rid in range(1, 2**62):
                        await ws.send(json.dumps({"id": 2 * rid, "method": "fleet", "params": {}}))
                        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if "error" in reply:
                            raise ValueError(f"the store refused fleet: {reply['error'].get('message')}")
                        self.cameras = {cam: (node.get("url"), node.get("state", "unknown"),
                                              substream_of(node.get("health"), cam))
                                        for node in reply["result"]["nodes"] for cam in node.get("cameras", ())}
                        self.fleet_error = None
                        await self._poll_revoked(ws, 2 * rid + 1)
                        backoff.reset()
                        await asyncio.sleep(FLEET_POLL_S)
            except (OSError, TimeoutError, ValueError, KeyError, websockets.WebSocketException) as exc:
                self.fleet_error = f"{type(exc).__name__}: {exc}"
                delay = backoff.next_delay()
                log.warning("cannot read the fleet from %s (%s); retrying in %.1f s", self.store_url, exc, delay)
                await asyncio.sleep(delay)

    async def _poll_revoked(self, ws: Any, rid: int) -> None:
        await ws.send(json.dumps({"id": rid, "method": "revoked", "params": {}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if "error" in reply:  # e.g. a store from before the method: keep serving, but say it loudly
            error = (f"the store refused revoked ({reply['error'].get('message')}); revoked tokens keep "
                     "working here until they expire: upgrade the store")
            if error != self.revoked_error:
                log.error("%s", error)
            self.revoked_error = error
            return
        self.revoked_error = None
        self.close_revoked(frozenset(reply["result"]["token_ids"]))

    def close_revoked(self, token_ids: frozenset[str]) -> None:
        """Take a new revoked list: refused from now on, and the streams such tokens have open end now."""
        if token_ids == self.revoked:
            return
        self.revoked = token_ids
        for connection, claims in list(self._claims.items()):
            if claims.token_id in token_ids:
                log.warning("closing %s's stream: token %s was revoked", claims.subject, claims.token_id)
                asyncio.get_running_loop().create_task(connection.close(1008, "token revoked"))

    def health(self) -> dict:
        return {"service": "relay", "store": self.store_url, "uptime_s": round(time.monotonic() - self.started, 1),
                "fleet_error": self.fleet_error, "cameras": sorted(self.cameras),
                "revoked_tokens": len(self.revoked), "revoked_error": self.revoked_error,
                "upstreams": {u.key: {"viewers": u.viewers, "streaming": u.streaming, "frames": u.frames}
                              for _, u in sorted(self.relay.upstreams.items())}}

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        address = connection.remote_address[0]
        try:
            claims = self.access.check(request.path, request.headers.get("Authorization"), address)
        except AuthError as exc:
            log.warning("refused %s from %s: %s", path, address, exc.reason)
            return error_response(connection, exc.status, exc.reason)
        if claims is not None:
            self._claims[connection] = claims  # so a revocation can end a stream already open
        if path == "/health":
            return json_response(connection, HTTPStatus.OK, self.health())
        if path == "/metrics":
            return metrics_response(connection, self.registry)
        if not path.startswith(LIVE_PREFIX):
            return error_response(connection, HTTPStatus.NOT_FOUND, f"no endpoint {path!r}; this is a relay: "
                                  "try /live/CAMERA, /health or /metrics")
        try:
            live_target(request.path, self.cameras)
            stream_choice(request.path)
        except LookupError as exc:
            return error_response(connection, HTTPStatus.NOT_FOUND, str(exc))
        except ValueError as exc:
            return error_response(connection, HTTPStatus.BAD_REQUEST, str(exc))
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        await self.relay.serve(connection, *live_target(connection.request.path),
                               mode=stream_choice(connection.request.path))


async def run_relay(store_url: str, host: str, port: int, token: str | None, security: SecurityOptions,
                    ca: str | None = None, node_ca: str | None = None) -> None:
    relay = RelayProcess(store_url, token, security, ca, node_ca)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = await relay.start(host, port)
    log.info("relay serving on port %d for the cameras of %s", bound, store_url)
    await stop.wait()
    await relay.stop()
