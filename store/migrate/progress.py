"""What migrate says while it works: segments and bytes done, the rate, and about how long is left, every few
seconds (and at the end of each step)."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_S = 2.0


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """One step's count of segments and bytes. ``moved``: bytes this run sent (the rate); ``done``: segments and
    bytes finished, including what an earlier run had finished."""

    def __init__(self, what: str, total: int, total_bytes: int, say: Callable[[str], None],
                 every_s: float = EVERY_S) -> None:
        self.what, self.total, self.total_bytes, self.say, self.every_s = what, total, total_bytes, say, every_s
        self.done = self.done_bytes = self.moved = 0
        self.started = self._said = time.monotonic()

    def add(self, segments: int, size_bytes: int, moved: int) -> None:
        self.done += segments
        self.done_bytes += size_bytes
        self.moved += moved
        if time.monotonic() - self._said >= self.every_s:
            self.report()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Bytes a second sent by this run."""
        return self.moved / max(self.elapsed_s, 1e-6)

    def report(self) -> None:
        self._said = time.monotonic()
        percent = 100.0 * self.done / self.total if self.total else 100.0
        line = (f"{self.what}: {self.done:,} of {self.total:,} segments ({percent:.1f}%), {size(self.done_bytes)} of "
                f"{size(self.total_bytes)}")
        if self.moved:
            line += f", {size(self.rate)}/s"
            left = self.total_bytes - self.done_bytes
            if left > 0 and self.rate > 0:
                line += f", about {duration(left / self.rate)} left"
        self.say(line)
