"""Where the console's playback gets a camera's footage from: the store's HTTP playback, else an export.

A store that serves ``GET /recordings/CAMERA.json`` (docs/protocol.md) is played
from ``/recordings/CAMERA.mp4`` straight over HTTP (PyAV reads what it needs with
Range requests, the viewer token in an ``Authorization`` header), its pieces
mapping media time to capture time. A store without it (an older one: its 404 says
there is no such endpoint, or nothing answers HTTP at its address) exports the
range through the query API (``export``) into a temporary file that is played
and then removed; an export keeps gaps as gaps in time, so one piece maps it. Any
other refusal of the sidecar (a bad token, nothing recorded, a bad range) is the
store's own one-line reason, not an export that would fail for a reason of its own.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from console.export_file import Caller, export_clip
from console.playback import Pieces, PlaybackError, PlaybackSource
from shared.security import client_ssl
from shared.urls import http_url

SIDECAR_TIMEOUT_S = 5.0
# How every store without /recordings (the shared server shell's 404, and the stores before it) starts its 404.
NO_ENDPOINT = "no endpoint "


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def recordings_url(store_url: str, camera: str, from_us: int, to_us: int, ext: str) -> str:
    query = urlencode({"from": iso(from_us), "to": iso(to_us)})
    return f"{http_url(store_url)}/recordings/{quote(camera, safe='')}.{ext}?{query}"


def ffmpeg_options(headers: dict[str, str], url: str, ca: str | None) -> dict[str, str]:
    """FFmpeg's http/tls options: the headers (each line CRLF-ended), the CA to verify an https store with."""
    options = {"headers": "".join(f"{k}: {v}\r\n" for k, v in headers.items())} if headers else {}
    if url.startswith("https://"):
        options["tls_verify"] = "1"
        if ca:
            options["ca_file"] = ca
    return options


def fetch_sidecar(url: str, headers: dict[str, str], ca: str | None) -> dict[str, Any] | None:
    """The JSON sidecar, or None when the store has no HTTP playback (an older store: a 404 naming no endpoint,
    or a refused connection). Any other refusal raises ``PlaybackError`` with the store's one-line reason.
    Blocking: a worker thread's."""
    context: ssl.SSLContext | None = client_ssl(url, ca)
    try:
        with urlopen(Request(url, headers=headers), timeout=SIDECAR_TIMEOUT_S, context=context) as answer:
            body = answer.read()
    except HTTPError as exc:
        reason = refusal_reason(exc)
        if exc.code == HTTPStatus.NOT_FOUND and reason.startswith(NO_ENDPOINT):
            return None
        raise PlaybackError(reason) from None
    except ConnectionRefusedError:
        return None
    except URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise PlaybackError(f"the store's footage listing cannot be fetched: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise PlaybackError(f"the store's footage listing cannot be fetched: {exc or type(exc).__name__}") from None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("pieces"), list):
        raise PlaybackError("the store's footage listing is not the JSON of docs/protocol.md; is it a store?")
    return data


def refusal_reason(exc: HTTPError) -> str:
    """The store's reason (the body's first line), or the status where the body says nothing."""
    try:
        text = exc.read(2048).decode("utf-8", "replace")
    except OSError:
        text = ""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line[:300] or f"the store answered {exc.code} {exc.reason}"


async def store_source(store: Caller, store_url: str, headers: dict[str, str], ca: str | None, camera: str,
                       from_us: int, to_us: int, workdir: Path,
                       on_progress: Callable[[int, int], None] = lambda done, total: None) -> PlaybackSource:
    """The footage of ``camera`` over ``[from_us, to_us)``: over HTTP when the store plays it, else exported."""
    sidecar_url = recordings_url(store_url, camera, from_us, to_us, "json")
    sidecar = await asyncio.to_thread(fetch_sidecar, sidecar_url, headers, ca)
    if sidecar is not None:
        url = recordings_url(store_url, camera, from_us, to_us, "mp4")
        return PlaybackSource(camera, url, Pieces.from_sidecar(sidecar), from_us, to_us,
                              options=ffmpeg_options(headers, url, ca), via="recordings")
    path = workdir / f"{camera}-{from_us}.mp4"
    result = await export_clip(store, camera, from_us, to_us, path, on_progress)
    return PlaybackSource(camera, str(path), Pieces.one(result.start_us, result.end_us), from_us, to_us,
                          cleanup=lambda: path.unlink(missing_ok=True), via="export")
