"""The ``motion`` recording mode: which finished segments to keep, with pre- and post-roll.

Pure bookkeeping, no I/O. Segments are held (already durable in the spool)
until it is known whether any event, past or still to come, wants them: a
segment [s, e) is kept if an event [a, b) satisfies a - pre_roll < e and
s < b + post_roll. It is discarded once no event can want it any more: no event
is open and even one starting right now would begin after e + pre_roll.

The ``objects`` mode (``require_label``) is the same with one more condition:
only events the store gave a label (``event_labelled``) want footage. An event
without one is *pending* while it is open and for ``label_grace_us`` after its
end: segments it could want stay held until its verdict. After that it wants
nothing, and its segments go like quiet ones. While no verdict can come
(``verdicts_expected`` False: the store is out of reach) and at a stop, every
event wants footage, as in motion mode: footage is never lost to a missing
verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_PRE_ROLL_S = 5.0
DEFAULT_POST_ROLL_S = 10.0
DEFAULT_LABEL_GRACE_S = 10.0  # objects mode: how long after its end an event may still get its label
LABEL_MEMORY_US = 600_000_000  # labels of events older than this (and no longer tracked) are forgotten
FOREVER = 2**62  # the end of an open event's window

Span = tuple[int, int]


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
    require_label: bool = False  # objects mode
    label_grace_us: int = int(DEFAULT_LABEL_GRACE_S * 1_000_000)
    verdicts_expected: bool = True  # False: no label can come now (the store is out of reach)
    labels: dict[int, str] = field(default_factory=dict)  # event start -> the label the store gave it

    def hold(self, start_us: int, end_us: int, item: T) -> None:
        self.held.append(Held(start_us, end_us, item))

    def event_started(self, start_us: int) -> None:
        self.open_since_us = start_us

    def event_finished(self, start_us: int, end_us: int) -> None:
        if self.open_since_us is not None and self.open_since_us <= start_us:
            self.open_since_us = None  # not if a later event has opened meanwhile
        self.events.append((start_us, end_us))

    def event_labelled(self, start_us: int, label: str) -> None:
        """The store found ``label`` in the event that started at ``start_us`` (open or finished)."""
        self.labels[start_us] = label

    def _counts(self, start_us: int) -> bool:
        """Does this event want footage now (rather than wait for, or have missed, its label)?"""
        return not self.require_label or not self.verdicts_expected or start_us in self.labels

    def windows(self, now_us: int | None) -> tuple[list[Span], list[Span]]:
        """(wanting, pending): the rolled windows of events that want footage, and of those still waiting for a
        label. ``now_us`` None: at a stop, where no verdict can come any more and every event not yet past its
        grace wants footage (all of them without a time)."""
        wanting: list[Span] = []
        pending: list[Span] = []
        for a, b in self.events:
            window = (a - self.pre_roll_us, b + self.post_roll_us)
            if self._counts(a):
                wanting.append(window)
            elif now_us is None or b + self.label_grace_us > now_us:
                pending.append(window)
        if self.open_since_us is not None:
            window = (self.open_since_us - self.pre_roll_us, FOREVER)
            (wanting if self._counts(self.open_since_us) else pending).append(window)
        return wanting, pending

    def wanted_span(self, start_us: int, end_us: int, windows: list[Span] | None = None) -> Span | None:
        """The part of [start_us, end_us) that events want (the hull of their rolled windows), or None."""
        spans = self.windows(None)[0] if windows is None else windows
        hits = [(max(lo, start_us), min(hi, end_us)) for lo, hi in spans if lo < end_us and start_us < hi]
        if not hits:
            return None
        return min(lo for lo, _ in hits), max(hi for _, hi in hits)

    @staticmethod
    def _touches(windows: list[Span], h: Held[T]) -> bool:
        return any(lo < h.end_us and h.start_us < hi for lo, hi in windows)

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
        wanting, pending = self.windows(now_us)
        for h in self.held:
            span = self.wanted_span(h.start_us, h.end_us, wanting)
            waiting = self._touches(pending, h)  # an event that may still get its label wants it then
            if span is not None:
                whole = span == (h.start_us, h.end_us)
                settled = (span[1] >= h.end_us or horizon - self.pre_roll_us >= h.end_us) and (whole or not waiting)
                if settled:
                    keep.append((h.item, span))
                else:
                    still.append(h)  # a coming event's pre-roll (or a coming label) may still want the rest of it
            elif not waiting and self.open_since_us is None and horizon - self.pre_roll_us >= h.end_us:
                discard.append(h.item)
            else:
                still.append(h)
        self.held = still
        oldest = min((h.start_us for h in still), default=now_us)
        # Events that can no longer touch any segment, held or future, are forgotten; so are their labels.
        self.events = [(a, b) for a, b in self.events if b + self.post_roll_us > oldest]
        tracked = {a for a, _ in self.events} | {self.open_since_us}
        self.labels = {a: label for a, label in self.labels.items()
                       if a in tracked or a > min(oldest, now_us) - LABEL_MEMORY_US}
        return keep, discard

    def finish(self, now_us: int | None = None) -> tuple[list[T], list[T]]:
        """At a clean stop, after the detector has closed its last event, no event can come any more:
        (keep, discard) for everything still held. No label can come either: an event still waiting for
        one (within its grace at ``now_us``; any without it) wants footage as in motion mode."""
        keep, discard = self.finish_spans(now_us)
        return [item for item, _ in keep], discard

    def finish_spans(self, now_us: int | None = None) -> tuple[list[tuple[T, tuple[int, int]]], list[T]]:
        wanting, pending = self.windows(now_us)
        wanting += pending
        keep: list[tuple[T, tuple[int, int]]] = []
        discard: list[T] = []
        for h in self.held:
            span = self.wanted_span(h.start_us, h.end_us, wanting)
            if span is None:
                discard.append(h.item)
            else:
                keep.append((h.item, span))
        self.held = []
        return keep, discard

    def release_all(self) -> list[T]:
        """On a switch to continuous mode: keep whatever is undecided."""
        items = [h.item for h in self.held]
        self.held = []
        return items
