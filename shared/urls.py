"""One service address, two schemes: ws:// for WebSocket endpoints, http:// for /health."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

_HTTP_FOR = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
_WS_FOR = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def _swap(url: str, table: dict[str, str]) -> str:
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    if parts.scheme not in table:
        raise ValueError(f"URL {url!r} must start with ws://, wss://, http:// or https://")
    return urlunsplit((table[parts.scheme], parts.netloc, parts.path.rstrip("/"), "", ""))


def http_url(url: str) -> str:
    return _swap(url, _HTTP_FOR)


def ws_url(url: str) -> str:
    return _swap(url, _WS_FOR)
