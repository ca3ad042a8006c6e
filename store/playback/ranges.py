"""The HTTP ``Range`` header of a GET (RFC 9110 §14): one byte range, or the whole body.

``byte_range(header, total)`` returns None (send everything: no header, a unit other than bytes, a syntax it
does not take, or several ranges, which a server may answer whole), or ``(first, last)`` inclusive, inside
``[0, total)``; ``Unsatisfiable`` (a 416 with ``Content-Range: bytes */TOTAL``) when the range starts at or past
the end, or asks for the last 0 bytes.
"""

from __future__ import annotations

import re

_SPEC = re.compile(r"bytes[ \t]*=[ \t]*([0-9]{0,19})[ \t]*-[ \t]*([0-9]{0,19})[ \t]*", re.ASCII | re.IGNORECASE)


class Unsatisfiable(ValueError):
    """A well-formed range none of whose bytes exist."""


def byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    if header is None:
        return None
    m = _SPEC.fullmatch(header)
    if m is None:
        return None
    first, last = m[1], m[2]
    if not first and not last:
        return None
    if not first:  # bytes=-N: the last N bytes
        n = int(last)
        if n == 0 or total == 0:
            raise Unsatisfiable(f"the last 0 bytes of {total}")
        return max(0, total - n), total - 1
    a = int(first)
    if last and int(last) < a:
        return None  # invalid: ignored, as RFC 9110 says
    if a >= total:
        raise Unsatisfiable(f"bytes from {a} of {total}")
    return a, min(int(last), total - 1) if last else total - 1


def content_range(first: int, last: int, total: int) -> str:
    return f"bytes {first}-{last}/{total}"
