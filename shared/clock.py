"""Wall-clock time in integer microseconds, the unit used on the wire and in the index."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_us() -> int:
    """Microseconds since the Unix epoch, from the wall clock."""
    return time.time_ns() // 1000


def monotonic_us() -> int:
    """Microseconds from the monotonic clock: never steps, meaningful only as a difference."""
    return time.monotonic_ns() // 1000


def iso_utc(us: int) -> str:
    """ISO 8601 UTC rendering of a microsecond timestamp, e.g. ``2026-11-26T13:52:46.123456Z``."""
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
