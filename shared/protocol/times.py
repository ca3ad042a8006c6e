"""The one range of times the store accepts, in every time field of every message it takes.

Times on the wire are integer microseconds since the Unix epoch (UTC). The store
accepts ``0 <= t <= MAX_TIME_US``, 2**53 µs: 1970-01-01 to 2255-06-05 UTC. Every
time in that range is exact as a 64-bit float (JavaScript on the web page,
``us / 1e6`` before ``datetime.fromtimestamp`` in the path builder), and a
``datetime`` holds it with any UTC offset; a time past year 9999 crashed the
path builder before this check existed.
"""

from __future__ import annotations

from typing import Any

from shared.fields import FieldReader
from shared.protocol.errors import ProtocolError

MIN_TIME_US = 0
MAX_TIME_US = 2**53
TIME_RANGE_TEXT = f"{MIN_TIME_US}..{MAX_TIME_US} µs since the epoch (1970-01-01 to 2255-06-05 UTC)"
# Keyword arguments for ``FieldReader.integer``: a time field's bounds.
TIME_BOUNDS: dict[str, Any] = {"minimum": MIN_TIME_US, "maximum": MAX_TIME_US}
_REQUIRED: Any = object()


def time_in_range(value: int) -> bool:
    return MIN_TIME_US <= value <= MAX_TIME_US


def check_time(value: int, field: str, what: str) -> None:
    """A ``bad-field`` ProtocolError naming ``field`` (of ``what``, e.g. "segment header") when out of range."""
    if not time_in_range(value):
        raise ProtocolError("bad-field", f"{what} field {field!r} is {value}, outside the store's time range "
                            f"{TIME_RANGE_TEXT}; is the sender's clock right?", field)


def read_time(r: FieldReader, key: str, default: Any = _REQUIRED) -> int:
    """An integer time field of a request, checked against the range; the error names the field and the range."""
    value = r.integer(key) if default is _REQUIRED else r.integer(key, default)
    if not time_in_range(value):
        raise r.error(key, f"is {value}, outside the store's time range {TIME_RANGE_TEXT}")
    return int(value)
