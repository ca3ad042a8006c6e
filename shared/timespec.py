"""Parse the CLI's time, duration and size arguments (``--from``, ``--to``, ``--at``, ``--max-age``, sizes).

Times become integer microseconds since the Unix epoch (UTC), the unit of the wire and the index.
Accepted times: ISO 8601 with or without a zone (no zone = local time, as ``datetime.astimezone()``
reads it; a date alone is local midnight; ``T`` or a space between date and time), ``now``,
``10m ago`` / ``2 hours ago`` (s, m, h, d, w and their words), ``today``, ``yesterday 23:30:15``
(local time) and ``@<unix seconds>``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MIN_US = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _US
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _US
_FORMS = ("use ISO 8601 (2026-11-26T08:00, with or without a zone; no zone = local time), 'now', '10m ago', "
          "'2h ago', 'today 08:00' or 'yesterday 23:30'")

_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hr": 3600, "hour": 3600,
            "d": 86400, "day": 86400, "w": 604800, "week": 604800}
_SECONDS |= {word + "s": n for word, n in _SECONDS.items() if len(word) > 1}  # secs, minutes, hrs, days, ...

_AMOUNT = re.compile(r"([0-9]+) ?([a-z]+)", re.ASCII)
_AGO = re.compile(r"([0-9]+) ?([a-z]+) ago", re.ASCII)
_DAY = re.compile(r"(today|yesterday)(?: ([0-9]{1,2})(?::([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?", re.ASCII)
_UNIX = re.compile(r"@(-?)([0-9]+)(?:\.([0-9]{1,6}))?", re.ASCII)
_ISO_CHARS = re.compile(r"[0-9WTZ:.,+\- ]+", re.ASCII)  # fromisoformat takes any separator: allow only T or space
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:([kmgt])(?:i?b)?|b)?", re.ASCII)


class TimeSpecError(ValueError):
    """A time, duration or size argument that cannot be parsed."""


def _normal(text: str) -> str:
    """Trim and collapse runs of whitespace to one space."""
    return " ".join(text.split())


def _to_us(dt: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    return (dt - _EPOCH) // _US


def _fraction_us(digits: str | None) -> int:
    """Microseconds in up to six fractional-second digits (``"5"`` is half a second)."""
    return int((digits or "").ljust(6, "0"))


def _parse(spec: str, now: datetime) -> int:
    """Parse a whitespace-normalised time; raises ValueError, OverflowError or OSError on bad input."""
    low = spec.lower()
    if low == "now":
        return _to_us(now)
    if (m := _AGO.fullmatch(low)) and m[2] in _SECONDS:
        return _to_us(now - timedelta(seconds=int(m[1]) * _SECONDS[m[2]]))
    if m := _DAY.fullmatch(low):
        day = now.astimezone().date() - timedelta(days=1 if m[1] == "yesterday" else 0)
        hour, minute, second = (int(g or 0) for g in m.group(2, 3, 4))
        local = datetime(day.year, day.month, day.day, hour, minute, second, _fraction_us(m[5]))
        return _to_us(local.astimezone())
    if m := _UNIX.fullmatch(low):
        us = int(m[2]) * 1_000_000 + _fraction_us(m[3])
        return -us if m[1] else us
    iso = spec.upper()  # accept 't' and 'z' too
    if not _ISO_CHARS.fullmatch(iso):
        raise ValueError(spec)
    parsed = datetime.fromisoformat(iso)
    return _to_us(parsed if parsed.utcoffset() is not None else parsed.astimezone())


def parse_time(text: str, now: datetime | None = None) -> int:
    """Microseconds since the epoch (UTC) for a CLI time; ``now`` (aware) anchors relative forms."""
    if now is None:
        now = datetime.now(UTC)
    elif now.utcoffset() is None:
        now = now.astimezone()
    try:
        us: int | None = _parse(_normal(text), now)
    except (ValueError, OverflowError, OSError):
        us = None
    if us is None or not _MIN_US <= us <= _MAX_US:
        raise TimeSpecError(f"{text!r} is not a time: {_FORMS}")
    return us


def format_local(us: int) -> str:
    """Local time ``YYYY-MM-DD HH:MM:SS`` of a microsecond timestamp (fractions truncated)."""
    local = (_EPOCH + timedelta(microseconds=us)).astimezone()
    return local.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def parse_duration(text: str) -> int:
    """Microseconds in a duration such as ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or ``2 weeks``."""
    m = _AMOUNT.fullmatch(_normal(text.lower()))
    try:
        if m and m[2] in _SECONDS:
            return timedelta(seconds=int(m[1]) * _SECONDS[m[2]]) // _US
    except (ValueError, OverflowError):
        pass
    raise TimeSpecError(f"{text!r} is not a duration: use a whole number and a unit, e.g. 30d, 12h, 90m, 45s or 2w")


def parse_size(text: str) -> int:
    """Bytes in a size such as ``500G``, ``1.5T``, ``200M``, ``10k``, ``4096`` (binary multiples, optional B/iB)."""
    m = _SIZE.fullmatch(_normal(text.lower()))
    try:
        if m and (m[2] or "." not in m[1]):
            return int(Fraction(m[1]) * 1024 ** ("kmgt".index(m[2]) + 1 if m[2] else 0))
    except (ValueError, OverflowError):
        pass
    raise TimeSpecError(f"{text!r} is not a size: use bytes or a number with K, M, G or T (1024s), e.g. 500G or 1.5T")
