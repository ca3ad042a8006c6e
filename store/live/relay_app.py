"""``sht relay``: a relay-only process, for spreading many viewers over several processes behind nginx.

It serves ``/live/{camera}`` (plain or ``?format=fmp4``), ``/health`` and
``/metrics``, exactly as the store's relay does, but holds no footage: it
learns where each camera is from the store's ``fleet`` API and the revoked
token ids from its ``revoked`` method (both every ``FLEET_POLL_S``), verifies
viewers' tokens offline with the store's public key (``GET /key``) against
that list, and closes the streams of tokens revoked while they watch, as a
node does. Its own token (a viewer token) is what it shows the store and the
nodes. Given several stores (``--store A,B``), it asks the one that answered last,
and the next one at once when that one fails (``shared.store_list``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from shared.auth import MONITORING, VIEWERS, AccessControl, Claims, Verifier
from shared.backoff import Backoff
from shared.fmp4_live import live_refusal, live_target, stream_choice
from shared.httpjson import json_response
from shared.metrics import metrics_response, new_registry
from shared.protocol.errors import ProtocolError
from shared.protocol.fleet import FleetReport
from shared.protocol.results import Revoked
from shared.query_client import NoStoreAnswers, StoreClient, StoreError, StoreUnreachable
from shared.security import SecurityOptions, client_ssl
from shared.server.routes import RouteTable, http_route, websocket_route
from shared.server.shell import ServerShell
from shared.store_key import fetch_store_key
from shared.store_list import StoreRotation, is_tls, parse_store_list
from store.live.relay import Location, Relay, substream_of
from store.serve.metrics import relay_families

log = logging.getLogger(__name__)
FLEET_POLL_S = 2.0
MAX_VIEWER_MESSAGE_BYTES = 64 * 1024  # viewers send us nothing of size


class RelayProcess:
    def __init__(self, store_url: str, token: str | None, security: SecurityOptions, ca: str | None = None,
                 node_ca: str | None = None) -> None:
        self.store_url, self.token, self.security = store_url, token, security
        self.rotation = StoreRotation(parse_store_list(store_url))
        self.store: str | None = None  # the store the fleet is read from now
        self.client_ssl = client_ssl("wss://", ca) if any(map(is_tls, self.rotation.stores)) else None
        self.cameras: dict[str, tuple[str | None, str, bool | None]] = {}  # camera -> (node URL, state, has sub?)
        self.fleet_error: str | None = "not asked yet"
        self.relay = Relay(self._locate, lambda: self.token, node_ca=node_ca)
        self.access: AccessControl = security.access(None)
        self.registry = new_registry(lambda: relay_families(self.relay))
        self.revoked: frozenset[str] = frozenset()  # token ids, from the store's ``revoked`` API method
        self.revoked_error: str | None = None  # why the list could not be read, if it could not
        self.started = time.monotonic()
        self.shell = ServerShell(RouteTable([
            http_route("/health", MONITORING, lambda c, _: json_response(c, HTTPStatus.OK, self.health())),
            http_route("/metrics", MONITORING, lambda c, _: metrics_response(c, self.registry)),
            websocket_route("/live/{camera}", VIEWERS, self._handle, MAX_VIEWER_MESSAGE_BYTES, check=self._live_check),
        ], note="this is a relay"), self.access)
        self._tasks: list[asyncio.Task] = []

    def _locate(self, camera: str) -> Location:
        url, state, substream = self.cameras.get(camera, (None, "unknown", None))
        if url is None or state != "up":
            return Location(None, f"the node of {camera} is {state}" if self.fleet_error is None
                            else f"cannot ask the store where {camera} is: {self.fleet_error}", substream)
        return Location(url, substream=substream)

    async def start(self, host: str, port: int) -> int:
        if self.security.auth:
            _, public_key = await fetch_store_key(self.store_url, self.client_ssl, Backoff(0.5, 10.0))
            log.info("verifying viewer tokens with the store's key (GET /key of %s)", self.store_url)
            self.access.verifier = Verifier(public_key, lambda: self.revoked)
        self._tasks.append(asyncio.create_task(self._poll_fleet(), name="fleet-poll"))
        return await self.shell.start(host, port, self.security.server_ssl())

    async def stop(self) -> None:
        self.relay.close()
        for task in self._tasks:
            task.cancel()
        await self.shell.close()

    async def _poll_fleet(self) -> None:
        backoff = Backoff(0.5, 10.0)
        loop = asyncio.get_running_loop()
        while True:
            answered: str | None = None
            try:
                async with StoreClient(self.rotation.order(loop.time()), open_timeout=5, token=self.token,
                                       ssl_context=self.client_ssl) as store:
                    answered = self.store = store.store
                    for skipped, error in store.skipped:
                        self.rotation.failed(skipped, loop.time(), error.message)
                    self.rotation.succeeded(answered)
                    while True:
                        fleet = FleetReport.from_json(await asyncio.wait_for(store.call("fleet"), 10))
                        self.cameras = {cam: (node.url, node.state, substream_of(node.health, cam))
                                        for node in fleet.nodes for cam in node.cameras}
                        self.fleet_error = None
                        await self._poll_revoked(store)
                        backoff.reset()
                        await asyncio.sleep(FLEET_POLL_S)
            except (StoreError, TimeoutError, ProtocolError) as exc:
                self.fleet_error = f"{type(exc).__name__}: {exc}"
                for failed, error in exc.failures if isinstance(exc, NoStoreAnswers) else ():
                    self.rotation.failed(failed, loop.time(), error.message)
                if answered is not None:  # it answered, then failed: with several stores, the next goes first
                    self.rotation.failed(answered, loop.time(), self.fleet_error)
                    self.store = None
                delay = backoff.next_delay()
                log.warning("cannot read the fleet from %s (%s); retrying in %.1f s", answered or self.store_url,
                            exc, delay)
                await asyncio.sleep(delay)

    async def _poll_revoked(self, store: StoreClient) -> None:
        try:
            revoked = Revoked.from_json(await asyncio.wait_for(store.call("revoked"), 10))
        except StoreUnreachable:
            raise
        except StoreError as exc:  # e.g. a store from before the method: keep serving, but say it loudly
            error = (f"the store refused revoked ({exc.message}); revoked tokens keep "
                     "working here until they expire: upgrade the store")
            if error != self.revoked_error:
                log.error("%s", error)
            self.revoked_error = error
            return
        self.revoked_error = None
        self.close_revoked(frozenset(revoked.token_ids))

    def close_revoked(self, token_ids: frozenset[str]) -> None:
        """Take a new revoked list: refused from now on, and the streams such tokens have open end now."""
        if token_ids == self.revoked:
            return
        self.revoked = token_ids
        self.shell.close_revoked(token_ids)

    def health(self) -> dict:
        return {"service": "relay", "store": self.store_url, "store_now": self.store,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "fleet_error": self.fleet_error, "cameras": sorted(self.cameras),
                "revoked_tokens": len(self.revoked), "revoked_error": self.revoked_error,
                "upstreams": {u.key: {"viewers": u.viewers, "streaming": u.streaming, "frames": u.frames}
                              for _, u in sorted(self.relay.upstreams.items())}}

    def _live_check(self, connection: ServerConnection, request: Request) -> Response | None:
        return live_refusal(connection, request.path, self.cameras)

    async def _handle(self, connection: ServerConnection, _: Claims | None) -> None:
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
