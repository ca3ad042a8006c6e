"""The one way every server splits an HTTP request target into its path and query.

``urllib.parse.urlsplit`` reads a target like ``//[x`` as a network location and raises
("Invalid IPv6 URL"); a request target on our servers is always origin-form
(``/path?query``), so it is split by hand and never raises. A fragment (``#…``), which a
client should not send, is dropped.
"""

from __future__ import annotations

from urllib.parse import parse_qs


def split_target(target: str) -> tuple[str, str]:
    """``/live/c0?format=fmp4#x`` → (``/live/c0``, ``format=fmp4``)."""
    path, _, query = target.partition("#")[0].partition("?")
    return path, query


def query_values(target: str, name: str) -> list[str]:
    """Every value of one query parameter, in order (empty if it is absent)."""
    return parse_qs(split_target(target)[1]).get(name, [])
