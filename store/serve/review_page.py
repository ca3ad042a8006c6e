"""``GET /review?camera=CAM&at=TIME``: the store's page (store/web/index.html) opened in its Review view, playing
that camera's footage from that moment; and ``GET /web/FILE``: the page's own scripts and style sheet.

A link in an alert or a chat leads straight to the footage. ``at`` takes the CLI's time forms
(``shared/timespec.py``: ISO 8601, ``10m ago``, ``@UNIX``); the store reads it, so the page gets one exact
moment (ISO 8601 UTC in ``data-review-at`` on ``<body>``). A request the store cannot read still gets the page,
with a 400 and the reason on ``data-review-error``, which the page shows as a line of text: a person who
followed a broken link sees why, a script sees the status.

The static files hold no secret and are served without a token (a ``<script src>`` cannot send one).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from functools import cache
from http import HTTPStatus
from importlib import resources

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from shared.ids import InvalidId, check_id
from shared.request_target import query_values, request_path
from shared.timespec import TimeSpecError, parse_time

REVIEW_ROUTE = "/review"
ASSET_ROUTE = "/web/{file}"
ASSET_PREFIX = "/web/"
ASSETS = {"review.js": "text/javascript; charset=utf-8", "review-day.js": "text/javascript; charset=utf-8",
          "review-timeline.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
USAGE = "open /review?camera=CAMERA&at=TIME, e.g. /review?camera=cam0&at=2026-11-26T08:00 or &at=10m+ago"


@cache
def _web_file(name: str) -> str:
    return (resources.files("store") / "web" / name).read_text()


def iso_utc(us: int) -> str:
    """``2026-11-26T08:00:00.123456Z`` for microseconds since the epoch."""
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def page(attributes: dict[str, str]) -> str:
    """The page, its ``<body>`` carrying ``attributes`` (escaped)."""
    text = _web_file("index.html")
    extra = "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in sorted(attributes.items()))
    return text.replace("<body>", f"<body{extra}>", 1)


def review_target(target: str) -> tuple[dict[str, str], str | None]:
    """The ``<body>`` attributes for a ``/review`` request target, and why it was refused (None if it was not)."""
    cameras, moments = query_values(target, "camera"), query_values(target, "at")
    if len(cameras) != 1 or len(moments) != 1:
        return {}, f"review needs one camera and one time: {USAGE}"
    try:
        camera = check_id(cameras[0], "camera")
    except InvalidId as exc:
        return {}, f"{exc}; {USAGE}"
    try:
        at_us = parse_time(moments[0])
    except TimeSpecError as exc:
        return {"data-review-camera": camera}, str(exc)
    return {"data-review-camera": camera, "data-review-at": iso_utc(at_us)}, None


def _html(connection: ServerConnection, status: HTTPStatus, text: str) -> Response:
    response = connection.respond(status, text)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"  # the URL carries a token; keep it out of caches
    return response


def review_response(connection: ServerConnection, request: Request) -> Response:
    attributes, refused = review_target(request.path)
    if refused is not None:
        attributes["data-review-error"] = refused
    return _html(connection, HTTPStatus.BAD_REQUEST if refused else HTTPStatus.OK, page(attributes))


def asset_response(connection: ServerConnection, request: Request) -> Response:
    name = request_path(request.path)[len(ASSET_PREFIX):]
    if name not in ASSETS:
        choices = ", ".join(ASSET_PREFIX + n for n in sorted(ASSETS))
        return connection.respond(HTTPStatus.NOT_FOUND, f"no file {name!r} here; the page's files are {choices}\n")
    response = connection.respond(HTTPStatus.OK, _web_file(name))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = ASSETS[name]
    response.headers["Cache-Control"] = "no-cache"  # revalidated: a new store version's page gets its new files
    return response
