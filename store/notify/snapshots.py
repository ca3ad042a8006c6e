"""``GET /snapshots/{event}.jpg``: an event's snapshot over plain HTTP (viewer token), the URL path the event
object's ``snapshot`` gives (store/notify/changes.py), so a webhook's receiver or Home Assistant can fetch it."""

from __future__ import annotations

from dataclasses import replace
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from shared.httpjson import error_response
from shared.request_target import request_path
from store.index.event_labels import event_snapshot

ROUTE = "/snapshots/{event}"
PREFIX = "/snapshots/"


async def snapshot_response(connection: ServerConnection, request: Request, conn: Any) -> Response:
    name = request_path(request.path)[len(PREFIX):]
    digits = name.removesuffix(".jpg")
    if not digits.isdigit() or len(digits) > 18:
        return error_response(connection, HTTPStatus.NOT_FOUND,
                              f"no snapshot {name!r}: the path is /snapshots/EVENT_ID.jpg, e.g. /snapshots/41.jpg")
    found = await event_snapshot(conn, int(digits))
    if found is None:
        return error_response(connection, HTTPStatus.NOT_FOUND, f"event {int(digits)} has no snapshot (no such "
                              "event, not analysed, or nothing recognised in it)")
    _, _, _, jpeg = found
    response = connection.respond(HTTPStatus.OK, "")
    response = replace(response, body=jpeg)
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "image/jpeg"
    response.headers["Content-Length"] = str(len(jpeg))
    response.headers["Cache-Control"] = "private, max-age=60"
    return response
