"""The store's network face: its endpoints, declared once, on the shared server shell.

``/ingest`` (``store/ingest/session.py``), ``/control`` (``store/nodes/control_link.py``),
``/api`` (``store/serve/api.py`` ``Api.serve``) and ``/live/{camera}`` (``store/live/relay.py``) over
WebSocket; ``GET /health`` (cached totals), ``/metrics``, ``/key``, the web page ``/`` and ``/review`` (its files under
``/web/``, store/serve/review_page.py), recorded footage at ``/recordings/CAMERA.mp4|.json`` and
``/thumbs/CAMERA.jpg`` (store/playback/routes.py), and ``/snapshots/EVENT.jpg``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from shared.auth import MONITORING, NODES, OPEN, VIEWERS, AccessControl, Claims, public_pem
from shared.clock import now_us
from shared.fmp4_live import live_refusal, live_target, stream_choice
from shared.httpjson import error_response, json_response
from shared.metrics import metrics_response
from shared.protocol.control import MAX_CONTROL_BYTES
from shared.protocol.ingest import (
    INGEST_VERSION,
    INGEST_VERSION_HEADER,
    MAX_FRAGMENT_BYTES,
    MAX_HEADER_BYTES,
    MAX_SEGMENT_BYTES,
)
from shared.protocol.query import MAX_REQUEST_BYTES
from shared.server.routes import RouteTable, http_route, websocket_route
from shared.server.shell import ServerShell
from store.admin.keys import SigningKeys
from store.detect.remote import RemoteDetectors
from store.index.db import Index
from store.index.location import IndexUnavailable
from store.ingest.session import IngestSessions
from store.ingest.writer import Ingestor
from store.live.relay import Location, Relay, substream_of, web_page
from store.media.budget import MediaLimits
from store.nodes.control_link import ControlLinks
from store.nodes.fleet import Fleet
from store.notify.snapshots import ROUTE as SNAPSHOT_ROUTE
from store.notify.snapshots import snapshot_response
from store.playback.routes import Playback
from store.segments import SegmentStore
from store.serve.api import Api
from store.serve.metrics import StoreMetrics
from store.serve.review_page import ASSET_ROUTE, REVIEW_ROUTE, asset_response, review_response

if TYPE_CHECKING:
    from store.detect.service import DetectionService

TOTALS_TTL_S = 30.0
MAX_VIEWER_MESSAGE_BYTES = 64 * 1024  # viewers send us nothing of size


class StoreServer:
    def __init__(self, ingestor: Ingestor, index: Index, access: AccessControl | None = None,
                 keys: SigningKeys | None = None, ssl_context: ssl.SSLContext | None = None,
                 node_ca: str | None = None, media: MediaLimits | None = None) -> None:
        self.ingestor = ingestor
        self.index = index
        self.lease: Any = None  # store.maintenance.lease.Lease, set by Store (None: a store alone on its index)
        self.replica: Any = None  # store.replica.task.ReplicaTask, set by Store with --replica
        self.notify: Any = None  # store.notify.service.NotifyService, set by Store
        self.keys = keys
        self.ssl_context = ssl_context
        self._totals: tuple[float, dict[str, dict]] | None = None  # (when, per-camera totals) for /health
        self._totals_ttl_s = 0.0
        self.started = time.monotonic()
        # Stores sharing a PostgreSQL index show one fleet, through its rows (store/nodes/fleet.py).
        self.fleet = Fleet(index.conn, now_us, shared=index.dialect == "postgresql")
        self.fleet.decides_orphans = lambda: self.lease is None or bool(self.lease.held)
        # /detect: ``sht detect --store`` workers; they get frames only while the store's detection is on
        self.detect_workers = RemoteDetectors()
        self.shell = ServerShell(self._routes(), access or AccessControl(None))
        self.control = ControlLinks(self.fleet, index, self.revoked, self.shell.close_revoked)
        self.api = Api(ingestor.root, index, self.fleet, on_setting=self.control.push_settings, revoked=self.revoked,
                       media=media)
        self.playback = Playback(index, self.api.media)  # /recordings and /thumbs
        self.metrics = StoreMetrics(self)
        self.ingest = IngestSessions(ingestor, index, self.metrics.ingest_seconds.time)
        # /live/{camera}: one upstream per camera and stream; node_ca verifies nodes that serve TLS
        self.relay = Relay(self._locate, self._relay_token, node_ca=node_ca)
        self._token: tuple[str, int] | None = None
        self._watch: list[asyncio.Task] = []
        self._pushes: set[asyncio.Task] = set()
        self.detection: DetectionService | None = None  # set by the Store when detection is on
        self.api.detector_health = lambda: self.detection.health() if self.detection is not None else None

    def _routes(self) -> RouteTable:
        # The server's max_size fits a whole segment (/ingest, in frames of at most MAX_FRAGMENT_BYTES); the
        # other endpoints only take small messages.
        return RouteTable([
            http_route("/health", MONITORING, self._health),
            http_route("/metrics", MONITORING, lambda c, _: metrics_response(c, self.metrics.registry)),
            http_route("/key", OPEN, self._key),
            http_route("/", VIEWERS, lambda c, _: web_page(c)),
            http_route(REVIEW_ROUTE, VIEWERS, review_response),  # the page in its Review view
            http_route(ASSET_ROUTE, OPEN, asset_response),  # the page's script and style sheet
            websocket_route("/api", VIEWERS, lambda c, claims: self.api.serve(c, claims, self.metrics.timed_query),
                            MAX_REQUEST_BYTES),
            websocket_route("/ingest", NODES, lambda c, claims: self.ingest.serve(c, claims),
                            MAX_SEGMENT_BYTES + MAX_HEADER_BYTES + 64, max_fragment_bytes=MAX_FRAGMENT_BYTES,
                            response_headers={INGEST_VERSION_HEADER: str(INGEST_VERSION)}),
            websocket_route("/control", NODES, lambda c, claims: self.control.serve(c, claims), MAX_CONTROL_BYTES),
            websocket_route("/live/{camera}", VIEWERS, self._live, MAX_VIEWER_MESSAGE_BYTES, check=self._live_check),
            self.detect_workers.route(),
            http_route(SNAPSHOT_ROUTE, VIEWERS, lambda c, r: snapshot_response(c, r, self.index.conn)),
            http_route("/recordings/{file}", VIEWERS, lambda c, r: self.playback.recordings(c, r)),
            http_route("/thumbs/{file}", VIEWERS, lambda c, r: self.playback.thumbs(c, r)),
        ])

    async def start(self, host: str, port: int) -> int:
        await self.fleet.load()
        port = await self.shell.start(host, port, self.ssl_context)
        # Before any connection is handled (nothing was awaited since the socket opened): the name other stores
        # of the index show as holding this one's nodes' links.
        self.fleet.store_id = f"{socket.gethostname()}:{port}"
        self._watch.append(asyncio.create_task(self.control.watch(), name="fleet-check"))
        if self.fleet.shared:
            for name, period_s, round_once in self.control.cluster_tasks():
                self._watch.append(asyncio.create_task(self.control.follow_cluster(name, period_s, round_once),
                                                       name=name))
        return port

    async def close(self) -> None:
        for task in self._watch:
            task.cancel()
        # Ended before the index closes under them (the Store closes it next): a round cancelled mid-statement
        # still has its rollback to make.
        await asyncio.gather(*self._watch, return_exceptions=True)
        self._watch.clear()
        self.relay.close()
        await self.detect_workers.close()
        await self.playback.close()  # layouts being made query the index: done before the Store closes it
        await self.shell.close()

    def event_labelled(self, camera: str, start_us: int, label: str | None) -> None:
        """Tell the camera's node the verdict on an event: a label, or None for "analysed, none found" (its
        ``objects`` recording mode keeps footage unless the verdict is None)."""
        node = self.fleet.node_of(camera)
        if node is None:
            return
        task = asyncio.create_task(self.control.push_event_label(node, camera, start_us, label))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    def locate(self, camera: str) -> Location:
        return self._locate(camera)

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

    async def _health(self, connection: ServerConnection, _: Request) -> Response:
        health = await self.health()
        # 503 while the index is out of reach: the store refuses every segment meanwhile (the body says why).
        unreachable = "error" in health["index"]
        return json_response(connection, HTTPStatus.SERVICE_UNAVAILABLE if unreachable else HTTPStatus.OK, health)

    def _key(self, connection: ServerConnection, _: Request) -> Response:
        if self.keys is None:
            return error_response(connection, HTTPStatus.NOT_FOUND, "this store runs without authentication")
        return connection.respond(HTTPStatus.OK, public_pem(self.keys.public_key()).decode())

    def _live_check(self, connection: ServerConnection, request: Request) -> Response | None:
        return live_refusal(connection, request.path, self.fleet.cameras())

    async def _live(self, connection: ServerConnection, _: Claims | None) -> None:
        assert connection.request is not None
        target = connection.request.path
        await self.relay.serve(connection, *live_target(target), mode=stream_choice(target))

    async def health(self) -> dict:
        stats = self.ingestor.stats
        # Per-camera totals are a GROUP BY over every row (seconds at tens of millions), on the connection
        # ingest commits through: an open /health polled by monitoring must not make ingest wait.
        now = time.monotonic()
        index: dict[str, Any] = {"backend": self.index.dialect,
                                 "maintenance": bool(self.lease.held) if self.lease is not None else True}
        if self._totals is None or now - self._totals[0] > self._totals_ttl_s:
            try:
                self._totals = (now, await self.index.camera_totals())
                # Fresh every time while that is cheap (a home store); kept a while once it is not.
                self._totals_ttl_s = TOTALS_TTL_S if time.monotonic() - now > 0.05 else 0.0
            except IndexUnavailable as exc:  # PostgreSQL away: say so, with the last totals read
                index["error"] = str(exc)
        totals = self._totals or (now, {})
        return {
            "service": "store",
            "uptime_s": round(now - self.started, 1),
            "root": str(self.ingestor.root),
            "ingest": {"stored": stats.stored, "duplicates": stats.duplicates,
                       "refused": stats.refused, "bytes_stored": stats.bytes_stored},
            "cameras": totals[1],
            "cameras_as_of_s_ago": round(now - totals[0], 1),
            "nodes": {n: s.state for n, s in sorted(self.fleet.nodes.items())},
            "store_id": self.fleet.store_id,  # how the other stores of a shared index name this one
            "detect": self.detection.health().to_json() if self.detection is not None else {"mode": "off"},
            # maintenance: whether this store runs retention and summaries (one store of those sharing an index);
            # error: why the index cannot be read now.
            "index": index,
            "segments": {"backend": _segments_backend(self.ingestor.segments),
                         "where": self.ingestor.segments.description},
            "replica": self.replica.health() if self.replica is not None else {"state": "off"},
            "notify": self.notify.health() if self.notify is not None else {"targets": {}},
        }


def _segments_backend(segments: SegmentStore) -> str:
    """``files`` (under ROOT/segments) or the object store's scheme (``s3``), for /health."""
    return "files" if segments.disk_path is not None else segments.description.partition("://")[0] or "remote"
