"""The node's network face: ``/live/{camera}`` over WebSocket and ``GET /health``.

A thin adapter: framing lives in ``shared.protocol.live``; the bytes sent to each
viewer are the very objects the fan-out built once per access unit.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from http import HTTPStatus

import websockets
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from node.capture.master import Camera, CameraMaster
from node.store_link.keyring import StoreKeyring
from shared.adaptive import AdaptivePolicy
from shared.auth import MONITORING, VIEWERS, AccessControl, Claims
from shared.fanout import FanOut
from shared.fmp4_live import LIVE_PREFIX, Fmp4Clock, Fmp4Stream, LiveWriter, live_target, stream_choice
from shared.httpjson import error_response, json_response
from shared.metrics import metrics_response
from shared.protocol.health import NodeHealth
from shared.protocol.live import LiveInit, LiveStatus
from shared.server.routes import RouteTable, endpoint_path, http_route, websocket_route
from shared.server.shell import ServerShell

log = logging.getLogger(__name__)
MAX_VIEWER_MESSAGE_BYTES = 64 * 1024  # viewers send us nothing of size
VIEWER_BACKLOG_S = 2.0  # how far a viewer may fall behind before it skips to a keyframe


class NodeServer:
    def __init__(self, master: CameraMaster, health: Callable[[], NodeHealth], access: AccessControl | None = None,
                 keyring: StoreKeyring | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.master = master
        self.health = health
        self.access = access or AccessControl(None)
        self.keyring = keyring  # None: authentication is off
        self.ssl_context = ssl_context
        self.metrics: CollectorRegistry | None = None  # node/serve/metrics.py, set by node/app.py
        self._fmp4: dict[tuple[str, str], Fmp4Stream] = {}  # per camera and stream, made on its first fMP4 viewer
        self._fmp4_clocks: dict[str, Fmp4Clock] = {}  # per camera: main and sub fragments share one timeline
        self.shell = ServerShell(RouteTable([
            http_route("/health", MONITORING, lambda c, _: json_response(c, HTTPStatus.OK, self.health().to_json())),
            http_route("/metrics", MONITORING, self._metrics),
            websocket_route("/live/{camera}", VIEWERS, self._handle, MAX_VIEWER_MESSAGE_BYTES, check=self._live_check),
        ]), self.access, self._tokens_uncheckable)

    async def start(self, host: str, port: int) -> int:
        return await self.shell.start(host, port, self.ssl_context)

    def close_revoked(self, token_ids: frozenset[str]) -> None:
        """End the open streams of viewers whose token was just revoked (the handshake checked them once)."""
        self.shell.close_revoked(token_ids)

    async def close(self) -> None:
        await self.shell.close()

    def _tokens_uncheckable(self) -> str | None:
        if self.keyring is None:
            return None
        self.access.verifier = self.keyring.verifier  # fetched in the background; None until it arrives
        if self.access.verifier is None:
            return ("this node has not got the store's public key yet, so it cannot check tokens; is the store "
                    "reachable? (or start the node with --store-key)")
        return None

    def _metrics(self, connection: ServerConnection, request: Request) -> Response:
        if self.metrics is None:
            return error_response(connection, HTTPStatus.NOT_FOUND, "this node keeps no metrics")
        return metrics_response(connection, self.metrics)

    def _live_check(self, connection: ServerConnection, request: Request) -> Response | None:
        camera = endpoint_path(request.path)[len(LIVE_PREFIX):]
        if camera not in self.master.cameras:
            known = ", ".join(sorted(self.master.cameras)) or "none"
            return error_response(connection, HTTPStatus.NOT_FOUND,
                                  f"no camera {camera!r} on this node (cameras here: {known})")
        try:
            live_target(request.path)
            stream_choice(request.path)
        except ValueError as exc:
            return error_response(connection, HTTPStatus.BAD_REQUEST, str(exc))
        return None

    async def _handle(self, connection: ServerConnection, _: Claims | None) -> None:
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
