"""Plain HTTP JSON answers from a websockets server's ``process_request`` hook."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response


def json_response(connection: ServerConnection, status: HTTPStatus, body: Any) -> Response:
    response = connection.respond(status, json.dumps(body, indent=1) + "\n")
    response.headers["Content-Type"] = "application/json"
    return response


def error_response(connection: ServerConnection, status: HTTPStatus, reason: str) -> Response:
    """A refused request: the reason is the body, so curl and the logs both say what was wrong."""
    return connection.respond(status, reason + "\n")


def fetch_json(url: str, timeout: float = 2.0) -> Any:
    """GET a JSON document (blocking; call it from a worker thread)."""
    from urllib.request import urlopen

    with urlopen(url, timeout=timeout) as reply:  # noqa: S310 - our own http:// endpoints
        return json.loads(reply.read())
