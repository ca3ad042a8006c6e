"""Answers to query API requests (``shared.protocol.query``), one task per request.

Heavy work (thumbnail decode, clip remux, file reads) runs in worker threads;
the event loop only moves replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from shared.auth import ADMIN_METHODS, Claims
from shared.clock import now_us
from shared.protocol.detector_health import DetectorHealth
from shared.protocol.fleet import FleetCamera, FleetReport
from shared.protocol.query import (
    ExportParams,
    HistoryParams,
    ListParams,
    LockParams,
    NotificationsParams,
    QueryServer,
    Request,
    SetSettingParams,
    SettingsParams,
    SnapshotParams,
    ThumbnailParams,
    TimelineParams,
)
from shared.protocol.results import LockResult, Revoked, Thumbnail
from shared.settings import SETTINGS, STORE_SETTINGS, STORE_WIDE, SettingError
from store.index import query, settings, timeline
from store.index.db import Index, transaction
from store.index.event_labels import event_snapshot
from store.index.location import IndexUnavailable
from store.media.budget import MediaLimits
from store.nodes.control_link import PUSH_CONFIRM_S
from store.nodes.fleet import Fleet
from store.notify.history import UnknownTarget
from store.notify.store_settings import set_store_setting, store_settings
from store.serve.in_flight import InFlight
from store.serve.media_requests import CHUNK_BYTES, REQUEST_TOKEN, MediaRefused, MediaRequests

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


Send = Callable[[], Awaitable[None]]
Timed = Callable[[str, Awaitable[None]], Coroutine[Any, Any, None]]


class Api:
    def __init__(self, root: Path, index: Index, fleet: Fleet,
                 on_setting: Callable[[str], Awaitable[None]] | None = None,
                 revoked: Callable[[], frozenset[str]] = frozenset, media: MediaLimits | None = None) -> None:
        self.root = root
        self.index = index
        self.fleet = fleet
        # export and thumbnail: budgets, cancellation, the thumbnail cache (store/serve/media_requests.py)
        self.media = MediaRequests(root, index, media)
        self.on_setting = on_setting  # pushes a camera's settings to its node
        self.revoked = revoked  # ids of revoked tokens (store/admin/keys.py)
        self.in_flight = InFlight()  # requests in flight per connection and per token (store/serve/in_flight.py)
        self.detector_health: Callable[[], DetectorHealth | None] = lambda: None  # the store's detector, for ``fleet``
        # (target, limit) -> the recent notifications: store/notify/history.py, set by the store's NotifyService
        self.notifications: Callable[[str | None, int], Awaitable[dict[str, Any]]] | None = None

    @property
    def conn(self):  # type: ignore[no-untyped-def]
        return self.index.conn

    async def serve(self, connection: ServerConnection, claims: Claims | None, timed: Timed) -> None:
        """One ``/api`` connection: each request runs in its own task, so a slow export never holds up a search;
        ``timed`` wraps each in the per-method latency histogram (store/serve/metrics.py)."""
        server = QueryServer()
        tasks: set[asyncio.Task] = set()
        slots = self.in_flight.connection(claims)

        async def flush() -> None:
            for out in server.data_to_send():
                await connection.send(out)

        def finished(task: asyncio.Task) -> None:
            tasks.discard(task)
            slots.give_back()

        try:
            async for message in connection:
                request = server.receive(message)
                if request is not None and (busy := slots.take()) is not None:
                    server.error(request.id, "busy", busy)  # over a cap: refused now, never queued
                    request = None
                if request is None:  # malformed or refused: its error reply is queued
                    await flush()
                    continue
                task = asyncio.create_task(timed(request.method, self.handle(request, server, flush, claims)))
                tasks.add(task)
                task.add_done_callback(finished)
        finally:  # the client is gone: nobody waits for the answers still being made
            for task in tasks:
                task.cancel()

    async def handle(self, request: Request, server: QueryServer, flush: Send, claims: Claims | None = None) -> None:
        """Run one request to its single final reply (result or error)."""
        REQUEST_TOKEN.set(claims.token_id if claims is not None else "anonymous")  # this task's own context
        try:
            if claims is not None and request.method in ADMIN_METHODS and claims.role != "admin":
                raise ApiError("forbidden", f"{request.method} needs an admin token; this one is {claims.role} "
                               f"({claims.subject})", "method")
            params = request.params
            if request.method == "set_setting" and claims is not None:
                params = replace(params, by=claims.subject)  # the history records who, from the token
            handler = getattr(self, f"_{request.method}")
            result = await handler(params, request.id, server, flush)
            server.result(request.id, result)
        except (ApiError, MediaRefused) as exc:
            server.error(request.id, exc.code, exc.message, exc.field)
        except IndexUnavailable as exc:  # PostgreSQL away: not a bug, and the store recovers when it is back
            log.warning("request %s (%s) failed: %s", request.id, request.method, exc)
            server.error(request.id, "index-unavailable", f"{exc}; try again once it is back")
        except Exception as exc:  # a bug must cost one request, not the connection
            log.exception("request %s (%s) failed", request.id, request.method)
            server.error(request.id, "internal", f"{type(exc).__name__}: {exc}")
        await flush()

    async def _require_camera(self, camera: str) -> None:
        if camera in self.fleet.cameras():
            return
        known = await query.known_cameras(self.conn)
        if camera not in known:
            names = ", ".join(sorted(known | set(self.fleet.cameras()))) or "none yet"
            raise ApiError("unknown-camera", f"no camera {camera!r} (known cameras: {names})", "camera")

    async def _fleet(self, p: Any, *_: Any) -> dict[str, Any]:
        self.fleet.check()
        cameras: dict[str, FleetCamera] = {}
        for cam in sorted(set(self.fleet.cameras()) | await query.known_cameras(self.conn)):
            node = self.fleet.node_of(cam)
            state = self.fleet.nodes[node].state if node else "unknown"
            cameras[cam] = FleetCamera(node, state, await settings.camera_settings(self.conn, cam))
        return FleetReport(tuple(s.summary() for s in sorted(self.fleet.nodes.values(), key=lambda s: s.node)),
                           cameras, now_us(), self.detector_health()).to_json()

    async def _revoked(self, p: Any, *_: Any) -> dict[str, Any]:
        """Relay-only processes poll this to close and refuse revoked viewers (nodes hear it over /control)."""
        return Revoked(tuple(sorted(self.revoked()))).to_json()

    async def _segments(self, p: ListParams, *_: Any) -> dict[str, Any]:
        for cam in p.cameras:
            await self._require_camera(cam)
        return (await query.list_segments(self.conn, p)).to_json()

    async def _events(self, p: ListParams, *_: Any) -> dict[str, Any]:
        for cam in p.cameras:
            await self._require_camera(cam)
        return (await query.list_events(self.conn, p)).to_json()

    async def _timeline(self, p: TimelineParams, *_: Any) -> dict[str, Any]:
        await self._require_camera(p.camera)
        return (await timeline.timeline(self.conn, p)).to_json()

    async def _thumbnail(self, p: ThumbnailParams, rid: int, server: QueryServer, flush: Send) -> dict[str, Any]:
        await self._require_camera(p.camera)
        return await self.media.thumbnail(p, rid, server)

    async def _snapshot(self, p: SnapshotParams, rid: int, server: QueryServer, flush: Send) -> dict[str, Any]:
        found = await event_snapshot(self.conn, p.event)
        if found is None:
            raise ApiError("not-found", await self._why_no_snapshot(p.event), "event")
        frame_us, width, height, jpeg = found
        for at in range(0, len(jpeg), CHUNK_BYTES):
            server.chunk(rid, memoryview(jpeg)[at : at + CHUNK_BYTES])
        return Thumbnail(frame_us, width, height, len(jpeg)).to_json()

    async def _why_no_snapshot(self, event_id: int) -> str:
        async with self.conn.execute("SELECT kind, open, labels FROM events WHERE id = ?", (event_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return f"no event with id {event_id}"
        kind, is_open, labels = row
        if kind != "motion":
            return f"event {event_id} is a {kind} event: the detector never looks at those"
        if labels is None:
            going = "is still going on and has no label yet" if is_open == 1 else "was never analysed"
            return (f"event {event_id} {going}: no snapshot (is object detection off on the store, "
                    "`sht store --detect off`?)")
        if labels == "{}":
            return f"event {event_id} has no snapshot: the detector recognised nothing in it"
        return f"event {event_id} has labels {labels} but no snapshot was kept"

    async def _export(self, p: ExportParams, rid: int, server: QueryServer, flush: Send) -> dict[str, Any]:
        await self._require_camera(p.camera)
        return await self.media.export(p, rid, server, flush)

    async def _lock_event(self, p: LockParams, *_: Any) -> dict[str, Any]:
        async with transaction(self.conn) as conn:
            cur = await conn.execute("UPDATE events SET locked = ? WHERE id = ?", (int(p.locked), p.event_id))
        if cur.rowcount == 0:
            raise ApiError("not-found", f"no event with id {p.event_id}", "event_id")
        return LockResult(p.event_id, p.locked).to_json()

    async def _settings(self, p: SettingsParams, *_: Any) -> dict[str, Any]:
        if p.camera is not None:
            await self._require_camera(p.camera)
            cams = [p.camera]
        else:
            cams = sorted(set(self.fleet.cameras()) | await query.known_cameras(self.conn))
        return {"settings": await settings.all_settings(self.conn, cams),
                "descriptions": {k: s.description for k, s in (SETTINGS | STORE_SETTINGS).items()},
                "store": await store_settings(self.conn)}  # store-wide (webhooks), secrets hidden

    async def set_setting(self, camera: str, key: str, value: Any, by: str) -> dict[str, Any]:
        """Change a camera's runtime setting as the ``set_setting`` method does (the one spec's check, the history
        row recorded ``by``, the push to its node), for the store's own parts (MQTT commands); ApiError if refused."""
        return await self._set_setting(SetSettingParams(camera, key, value, by=by))

    async def _set_setting(self, p: SetSettingParams, *_: Any) -> dict[str, Any]:
        """``pushed``: the node has the new value: sent on its link here, or (``via_store``) by the other store of
        the index holding its link, which marks it sent within PUSH_CONFIRM_S (false if it did not)."""
        if p.camera is None:
            return await self._set_store_setting(p)
        await self._require_camera(p.camera)
        changed_us = now_us()
        try:
            old, new = await settings.set_setting(self.conn, p.camera, p.key, p.value, p.by, changed_us)
        except SettingError as exc:
            raise ApiError("bad-setting", str(exc), "value" if exc.key in SETTINGS else "key") from exc
        node = self.fleet.node_of(p.camera)
        pushed = node in self.fleet.links
        if self.on_setting is not None:
            await self.on_setting(p.camera)
        via = self.fleet.link_store(node)
        if not pushed and via is not None:
            pushed = await settings.wait_pushed(self.conn, p.camera, p.key, changed_us, PUSH_CONFIRM_S)
        return {"camera": p.camera, "key": p.key, "old": old, "new": new, "node": node, "pushed": pushed,
                "via_store": via}

    async def _set_store_setting(self, p: SetSettingParams) -> dict[str, Any]:
        """A store-wide setting (no camera): kept under camera ``*``, nothing pushed to nodes."""
        try:
            old, new = await set_store_setting(self.conn, p.key, p.value, p.by, now_us())
        except SettingError as exc:
            raise ApiError("bad-setting", str(exc), "value" if exc.key in STORE_SETTINGS else "key") from exc
        if self.on_setting is not None:
            await self.on_setting(STORE_WIDE)  # the store's own parts read it again (store/notify)
        return {"camera": None, "key": p.key, "old": old, "new": new, "node": None, "pushed": False}

    async def _settings_history(self, p: HistoryParams, *_: Any) -> dict[str, Any]:
        return {"items": await settings.history(self.conn, p.camera, p.limit)}

    async def _notifications(self, p: NotificationsParams, *_: Any) -> dict[str, Any]:
        if self.notifications is None:  # an Api without the store's notify service (unit tests)
            raise ApiError("not-found", "this store sends no notifications", "target")
        try:
            return await self.notifications(p.target, p.limit)
        except UnknownTarget as exc:  # its message names the store's targets
            raise ApiError("not-found", str(exc), "target") from exc
