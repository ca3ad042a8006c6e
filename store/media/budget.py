"""How much temporary disk and memory exports and thumbnails may hold at once, per token and in all.

An export's clip is written whole to ROOT/cache/exports before it is sent, so a
client asking for many at once (and never reading the answers) could fill the
disk. Each export reserves its estimated size (the sum of its segments' sizes)
before any work starts, each thumbnail being made a fixed estimate of the
memory a decode takes; the reservation is given back when the request ends,
however it ends. Pure bookkeeping, no I/O: it lives on the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

MIB = 1024 * 1024
# With the thumbnail cache's 256 MiB, a single token's exports and thumbnails stay within 1 GiB of disk.
DEFAULT_TEMP_PER_TOKEN = 768 * MIB
DEFAULT_TEMP_TOTAL = 2048 * MIB
# A decoder, one source frame (up to 4K: 12 MiB in 4:2:0), the scaled frame and the JPEG encoder.
THUMBNAIL_WORK_BYTES = 32 * MIB
THUMB_CACHE_CEILING = 256 * MIB
THUMB_CACHE_DISK_FRACTION = 0.01


@dataclass(frozen=True)
class MediaLimits:
    """The store's media limits (``sht store --temp-per-token/--temp-total/--thumb-cache``)."""

    temp_per_token: int = DEFAULT_TEMP_PER_TOKEN
    temp_total: int = DEFAULT_TEMP_TOTAL
    thumb_cache_bytes: int | None = None  # None: min(256 MiB, 1 % of the disk)
    thumb_cache_percent: float | None = None  # set instead of thumb_cache_bytes by "--thumb-cache N%"


def default_thumb_cache_bytes(disk_total: int, percent: float | None = None) -> int:
    if percent is not None:
        return int(disk_total * percent / 100)
    return min(THUMB_CACHE_CEILING, int(disk_total * THUMB_CACHE_DISK_FRACTION))


class BudgetRefused(Exception):
    """A reservation that does not fit: ``code`` is ``too-large`` (it never will) or ``busy`` (try later)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class TempBudget:
    """Bytes held by each token's exports and thumbnails in progress, checked before work starts."""

    def __init__(self, per_token: int = DEFAULT_TEMP_PER_TOKEN, total: int = DEFAULT_TEMP_TOTAL) -> None:
        self.per_token = per_token
        self.total = total
        self.held: dict[str, int] = {}
        self.held_total = 0

    @contextlib.contextmanager
    def hold(self, token: str, nbytes: int, what: str) -> Iterator[None]:
        """Reserve ``nbytes`` for ``token`` while the block runs, or raise ``BudgetRefused`` naming the cap."""
        self._check(token, nbytes, what)
        self.held[token] = self.held.get(token, 0) + nbytes
        self.held_total += nbytes
        try:
            yield
        finally:
            self.held_total -= nbytes
            left = self.held.get(token, 0) - nbytes  # a hold of 0 bytes leaves no entry behind it
            if left > 0:
                self.held[token] = left
            else:
                self.held.pop(token, None)

    def _check(self, token: str, nbytes: int, what: str) -> None:
        cap = min(self.per_token, self.total)
        if nbytes > cap:
            raise BudgetRefused("too-large", f"{what} needs about {size_text(nbytes)} of temporary disk, more than "
                                f"the {size_text(cap)} one token may hold at once (sht store --temp-per-token): "
                                f"ask for a shorter range")
        mine = self.held.get(token, 0)
        if mine + nbytes > self.per_token:
            raise BudgetRefused("busy", f"{what} needs about {size_text(nbytes)} of temporary disk and memory; this "
                                f"token's exports and thumbnails in progress already hold {size_text(mine)} of the "
                                f"{size_text(self.per_token)} a token may hold at once (sht store --temp-per-token): "
                                f"wait for them to finish, then ask again")
        if self.held_total + nbytes > self.total:
            raise BudgetRefused("busy", f"{what} needs about {size_text(nbytes)} of temporary disk and memory; the "
                                f"store's exports and thumbnails in progress already hold "
                                f"{size_text(self.held_total)} of the {size_text(self.total)} allowed in all "
                                f"(sht store --temp-total): try again shortly")
