"""The ``motion`` recording mode: which finished segments to keep, with pre- and post-roll.

Pure bookkeeping, no I/O. Segments are held (already durable in the spool)
until it is known whether any event, past or still to come, wants them: a
segment [s, e) is kept if an event [a, b) satisfies a - pre_roll < e and
s < b + post_roll. It is discarded once no event can want it any more: no event
is open and even one starting right now would begin after e + pre_roll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PRE_ROLL_S = 5.0
DEFAULT_POST_ROLL_S = 10.0


@dataclass
class Held(Generic[T]):
    start_us: int
    end_us: int
    item: T


@dataclass
class RecordingGate(Generic[T]):
    pre_roll_us: int = int(DEFAULT_PRE_ROLL_S * 1_000_000)
    post_roll_us: int = int(DEFAULT_POST_ROLL_S * 1_000_000)
    # The detector reports an event a few frames after it began: keep a margin
    # before giving up on a segment, so a late report still finds its pre-roll.
    detection_delay_us: int = 2_000_000
    held: list[Held[T]] = field(default_factory=list)
    events: list[tuple[int, int]] = field(default_factory=list)  # finished events, oldest first
    open_since_us: int | None = None  # start of the event in progress

    def hold(self, start_us: int, end_us: int, item: T) -> None:
        self.held.append(Held(start_us, end_us, item))

    def event_started(self, start_us: int) -> None:
        self.open_since_us = start_us

    def event_finished(self, start_us: int, end_us: int) -> None:
        if self.open_since_us is not None and self.open_since_us <= start_us:
            self.open_since_us = None  # not if a later event has opened meanwhile
        self.events.append((start_us, end_us))

    def wanted_span(self, start_us: int, end_us: int) -> tuple[int, int] | None:
        """The part of [start_us, end_us) that events want (the hull of their rolled windows), or None."""
        spans = [(a - self.pre_roll_us, b + self.post_roll_us) for a, b in self.events]
        if self.open_since_us is not None:
            spans.append((self.open_since_us - self.pre_roll_us, end_us))
        hits = [(max(lo, start_us), min(hi, end_us)) for lo, hi in spans if lo < end_us and start_us < hi]
        if not hits:
            return None
        return min(lo for lo, _ in hits), max(hi for _, hi in hits)

    def _wanted(self, h: Held[T]) -> bool:
        if self.open_since_us is not None and self.open_since_us - self.pre_roll_us < h.end_us:
            return True
        return any(a - self.pre_roll_us < h.end_us and h.start_us < b + self.post_roll_us for a, b in self.events)

    def decide(self, now_us: int) -> tuple[list[T], list[T]]:
        """(keep, discard): segments whose fate is now known, in time order; the rest stay held."""
        keep, discard = self.decide_spans(now_us)
        return [item for item, _ in keep], discard

    def decide_spans(self, now_us: int) -> tuple[list[tuple[T, tuple[int, int]]], list[T]]:
        """As ``decide``, with the part of each kept segment the events want (to trim it to)."""
        keep: list[tuple[T, tuple[int, int]]] = []
        discard: list[T] = []
        still: list[Held[T]] = []
        horizon = now_us - self.detection_delay_us  # events may still be reported from here on
        for h in self.held:
            if self._wanted(h):
                span = self.wanted_span(h.start_us, h.end_us) or (h.start_us, h.end_us)
                settled = span[1] >= h.end_us or horizon - self.pre_roll_us >= h.end_us
                if settled:
                    keep.append((h.item, span))
                else:
                    still.append(h)  # a coming event's pre-roll may still want the rest of it
            elif self.open_since_us is None and horizon - self.pre_roll_us >= h.end_us:
                discard.append(h.item)
            else:
                still.append(h)
        self.held = still
        oldest = min((h.start_us for h in still), default=now_us)
        # Events that can no longer touch any segment, held or future, are forgotten.
        self.events = [(a, b) for a, b in self.events if b + self.post_roll_us > oldest]
        return keep, discard

    def finish(self) -> tuple[list[T], list[T]]:
        """At a clean stop, after the detector has closed its last event, no event can come any more:
        (keep, discard) for everything still held."""
        keep, discard = self.finish_spans()
        return [item for item, _ in keep], discard

    def finish_spans(self) -> tuple[list[tuple[T, tuple[int, int]]], list[T]]:
        keep = [(h.item, self.wanted_span(h.start_us, h.end_us) or (h.start_us, h.end_us))
                for h in self.held if self._wanted(h)]
        discard = [h.item for h in self.held if not self._wanted(h)]
        self.held = []
        return keep, discard

    def release_all(self) -> list[T]:
        """On a switch to continuous mode: keep whatever is undecided."""
        items = [h.item for h in self.held]
        self.held = []
        return items
