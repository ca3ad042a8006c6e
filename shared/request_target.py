"""The one way every server reads an HTTP request target: its path, and its query.

``urllib.parse.urlsplit`` reads a target like ``//[x`` as a network location and raises
("Invalid IPv6 URL"); a request target on our servers is always origin-form
(``/path?query``), so it is split by hand and never raises. A fragment (``#…``), which a
client should not send, is dropped.

``request_path`` is the path every server routes on (node, store and relay alike, through
``shared.server.routes.endpoint_path``), with one set of rules:

- ``%``-escapes are decoded once (``/live/c%30`` is ``/live/c0``; ``%252F`` is ``%2F``, not ``/``);
  a ``%`` not followed by two hex digits, or escapes that are not UTF-8, are refused (400);
- dot segments (``.``, ``..``, escaped or not) are refused (400): no path means "the parent";
- one trailing slash is ignored (``/live/c0/`` is ``/live/c0``, ``/health/`` is ``/health``);
- what is left is matched as is: ``/live/`` or ``/live//c0`` name no camera (404).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote_to_bytes

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadTarget(ValueError):
    """A request target no server accepts (answered 400 with this reason)."""


def split_target(target: str) -> tuple[str, str]:
    """``/live/c0?format=fmp4#x`` → (``/live/c0``, ``format=fmp4``), the path still escaped."""
    path, _, query = target.partition("#")[0].partition("?")
    return path, query


def request_path(target: str) -> str:
    """The decoded path of a request target by the rules above; ``BadTarget`` says why one is refused."""
    raw = split_target(target)[0]
    if _BAD_ESCAPE.search(raw):
        raise BadTarget(f"bad %-escape in {raw!r}: a % must be followed by two hex digits")
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadTarget(f"the %-escapes of {raw!r} are not UTF-8") from None
    if any(part in (".", "..") for part in path.split("/")):
        raise BadTarget(f"dot segments ('.' or '..') are not allowed in a path, got {path!r}")
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def query_values(target: str, name: str) -> list[str]:
    """Every value of one query parameter, in order (empty if it is absent)."""
    return parse_qs(split_target(target)[1]).get(name, [])
