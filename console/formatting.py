"""Short, fixed-width renderings of the numbers the console shows: percentages, rates, ages, times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

NOT_AVAILABLE = "n/a"
MISSING = "-"
_BARS = "▁▂▃▄▅▆▇█"


def number(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    """``value`` formatted with ``spec`` and ``suffix``; ``-`` when it is unknown."""
    return MISSING if value is None else format(value, spec) + suffix


def megabits(bits_per_second: float | None) -> str:
    return MISSING if bits_per_second is None else f"{bits_per_second / 1e6:.2f}"


def seconds(value: float | None) -> str:
    """A duration the way an operator reads it: ``42s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    if value is None:
        return MISSING
    whole = max(0, int(value))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def nbytes(value: float | None) -> str:
    if value is None:
        return MISSING
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns at GB


def clock(us: int) -> str:
    """Local wall-clock time ``HH:MM:SS`` of a microsecond timestamp."""
    return datetime.fromtimestamp(us / 1e6).strftime("%H:%M:%S")


def stamp(us: int) -> str:
    """Local ``YYYY-MM-DD HH:MM:SS`` of a microsecond timestamp."""
    return datetime.fromtimestamp(us / 1e6).strftime("%Y-%m-%d %H:%M:%S")


def day_clock(us: int) -> str:
    """Local ``Thu 09:33``: a time within the last day, short enough for a table column."""
    return datetime.fromtimestamp(us / 1e6).strftime("%a %H:%M")


def file_stamp(us: int) -> str:
    """Local ``YYYYMMDD-HHMMSS`` for file names."""
    return datetime.fromtimestamp(us / 1e6).strftime("%Y%m%d-%H%M%S")


def spark(values: Sequence[float | None], width: int = 10, floor: float | None = 0.0) -> str:
    """A text sparkline of the last ``width`` values (for table cells; panels use Textual's Sparkline).

    Bars are measured from ``floor`` (zero by default, so a steady 5 fps reads as steady, not as noise);
    ``floor=None`` stretches them between the smallest and largest value.
    """
    tail = [v for v in values if v is not None][-width:]
    if not tail:
        return ""
    low, high = min(tail) if floor is None else min(floor, *tail), max(tail)
    span = high - low
    if span <= 0:
        return _BARS[0] * len(tail)
    return "".join(_BARS[min(len(_BARS) - 1, int((v - low) / span * (len(_BARS) - 1) + 0.5))] for v in tail)


def local_utc_offset_s(at_us: int) -> int:
    """The local zone's offset from UTC in seconds at a moment (for day and hour buckets)."""
    offset = datetime.fromtimestamp(at_us / 1e6).astimezone().utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0
