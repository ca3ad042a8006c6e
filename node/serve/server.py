"""The node's network face: ``/live/{camera}`` over WebSocket and ``GET /health``.

A thin adapter: framing lives in ``shared.protocol.live``; the bytes sent to each
viewer are the very objects the fan-out built once per access unit.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

import websockets
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from node.capture.master import Camera, CameraMaster
from node.store_link.keyring import StoreKeyring
from shared.adaptive import AdaptivePolicy
from shared.auth import AccessControl, AuthError, Claims
from shared.fanout import FanOut
from shared.fmp4_live import Fmp4Clock, Fmp4Stream, LiveWriter, live_target, stream_choice
from shared.httpjson import error_response, json_response
from shared.metrics import metrics_response
from shared.protocol.live import LiveInit, LiveStatus

log = logging.getLogger(__name__)
LIVE_PREFIX = "/live/"
VIEWER_BACKLOG_S = 2.0  # how far a viewer may fall behind before it skips to a keyframe
__all__ = ["NodeServer", "stream_choice"]  # stream_choice lives in shared/fmp4_live.py now (the relay parses it too)


class NodeServer:
    def __init__(self, master: CameraMaster, health: Callable[[], dict], access: AccessControl | None = None,
                 keyring: StoreKeyring | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.master = master
        self.health = health
        self.access = access or AccessControl(None)
        self.keyring = keyring  # None: authentication is off
        self.ssl_context = ssl_context
        self.server: Server | None = None
        self._claims: weakref.WeakKeyDictionary[ServerConnection, Claims] = weakref.WeakKeyDictionary()
        self.metrics: CollectorRegistry | None = None  # node/serve/metrics.py, set by node/app.py
        self._fmp4: dict[tuple[str, str], Fmp4Stream] = {}  # per camera and stream, made on its first fMP4 viewer
        self._fmp4_clocks: dict[str, Fmp4Clock] = {}  # per camera: main and sub fragments share one timeline

    async def start(self, host: str, port: int) -> int:
        self.server = await serve(
            self._handle, host, port, process_request=self._route,
            max_size=64 * 1024,  # viewers send us nothing of size
            compression=None,  # H.264 does not compress further; don't burn CPU trying
            ssl=self.ssl_context,
        )
        return self.server.sockets[0].getsockname()[1]

    def close_revoked(self, token_ids: frozenset[str]) -> None:
        """End the open streams of viewers whose token was just revoked (the handshake checked them once)."""
        for connection, claims in list(self._claims.items()):
            if claims.token_id in token_ids:
                log.warning("closing %s's stream: token %s was revoked", claims.subject, claims.token_id)
                asyncio.get_running_loop().create_task(connection.close(1008, "token revoked"))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if self.keyring is not None:
            if self.keyring.verifier is None and urlsplit(request.path).path not in self.access.open_paths:
                return error_response(connection, HTTPStatus.SERVICE_UNAVAILABLE,
                                      "this node has not got the store's public key yet, so it cannot check "
                                      "tokens; is the store reachable? (or start the node with --store-key)")
            self.access.verifier = self.keyring.verifier
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
        if path == "/metrics" and self.metrics is not None:
            return metrics_response(connection, self.metrics)
        if path.startswith(LIVE_PREFIX):
            camera = path[len(LIVE_PREFIX):]
            if camera not in self.master.cameras:
                known = ", ".join(sorted(self.master.cameras)) or "none"
                return error_response(
                    connection, HTTPStatus.NOT_FOUND,
                    f"no camera {camera!r} on this node (cameras here: {known})",
                )
            try:
                live_target(request.path)
                stream_choice(request.path)
            except ValueError as exc:
                return error_response(connection, HTTPStatus.BAD_REQUEST, str(exc))
            return None
        return error_response(
            connection, HTTPStatus.NOT_FOUND,
            f"no endpoint {path!r}; try /health or /live/CAMERA",
        )

    async def _handle(self, connection: ServerConnection) -> None:
        path = connection.request.path if connection.request else ""
        camera_id, fmp4 = live_target(path)
        camera = self.master.cameras[camera_id]
        cfg = camera.config
        mode = stream_choice(path) if camera.sub_fanout is not None else "main"
        current = "sub" if mode == "sub" else "main"
        policy = AdaptivePolicy(cfg.fps) if mode == "auto" else None
        capacity = int(cfg.fps * VIEWER_BACKLOG_S) + 1
        name = f"viewer {connection.remote_address}"
        writer = LiveWriter(connection, fmp4)
        fanout = self._fanout(camera, current)
        sub = fanout.subscribe(name, capacity)
        try:
            await writer.begin(self._init(camera, current), self._fmp4_stream(camera, current) if fmp4 else None)
            while (switch := await writer.pump(sub, policy)) is not None:
                # The new stream starts on its next keyframe, after its own init.
                log.info("%s of %s: %d units queued, switching to the %s stream", name, camera.id,
                         sub.backlog, switch)
                fanout.unsubscribe(sub)
                current, fanout = switch, self._fanout(camera, switch)
                sub = fanout.subscribe(name, capacity)
                await writer.begin(self._init(camera, current), self._fmp4_stream(camera, current) if fmp4 else None)
            await connection.send(LiveStatus(camera.id, camera.state, camera.error or "camera stopped").serialize())
            await connection.close(1001, "camera stopped")
        except websockets.ConnectionClosed:
            pass
        finally:
            fanout.unsubscribe(sub)

    @staticmethod
    def _fanout(camera: Camera, stream: str) -> FanOut:
        return camera.sub_fanout if stream == "sub" and camera.sub_fanout is not None else camera.fanout

    def _fmp4_stream(self, camera: Camera, stream: str) -> Fmp4Stream:
        key = (camera.id, stream)
        if key not in self._fmp4:
            clock = self._fmp4_clocks.setdefault(camera.id, Fmp4Clock())
            self._fmp4[key] = Fmp4Stream(self._init(camera, stream), clock)
        return self._fmp4[key]

    @staticmethod
    def _init(camera: Camera, stream: str) -> LiveInit:
        cfg = camera.config
        width, height = cfg.substream if stream == "sub" and cfg.substream else (cfg.width, cfg.height)
        return LiveInit(camera.id, camera.codec, width, height, cfg.fps, stream)
