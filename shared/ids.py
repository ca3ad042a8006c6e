"""Validated names for nodes and cameras.

Ids end up in file paths and URLs, so they are checked once, at the edge, and
nothing downstream ever builds a path from an unchecked string.
"""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class InvalidId(ValueError):
    """A node or camera id that does not match ``ID_PATTERN``."""


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise ``InvalidId`` naming ``what``."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InvalidId(
            f"{what} {value!r} is not valid: use 1-32 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    return value
