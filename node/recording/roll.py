"""The ``motion`` recording mode: which finished segments to keep, with pre- and post-roll.

Pure bookkeeping, no I/O. Segments are held (already durable in the spool)
until it is known whether any event, past or still to come, wants them: a
segment [s, e) is kept if an event [a, b) satisfies a - pre_roll < e and
s < b + post_roll. It is discarded once no event can want it any more: no event
is open and even one starting right now would begin after e + pre_roll.

The ``objects`` mode (``require_label``) is the same with one more condition:
an event the store has given the verdict "analysed, none of the camera's
objects" (``event_labelled`` with None, once the event is closed) wants
nothing, and its segments go like quiet ones. An event with a label wants
footage as in motion mode. One with no verdict yet is *pending* while it is
open and for ``label_grace_us`` after its end: segments it could want stay held
until its verdict. If none has come by then it wants footage as in motion mode
(counted in ``kept_without_verdict``): silence may mean a detector that is off,
busy or restarting, and footage is never lost to a missing verdict. So it is
while no verdict can come (``verdicts_expected`` False: the store is out of
reach) and at a stop: every event without one wants footage at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.protocol.ingest import MAX_SEGMENT_US

T = TypeVar("T")

DEFAULT_PRE_ROLL_S = 5.0
DEFAULT_POST_ROLL_S = 10.0
# objects mode: how long after its end an event waits for the store's verdict (it comes 1-2 s after the store
# hears of the close; more when the store is busy) before its footage is kept without one
DEFAULT_LABEL_GRACE_S = 30.0
LABEL_MEMORY_US = 600_000_000  # verdicts on events older than this (and no longer tracked) are forgotten
FOREVER = 2**62  # the end of an open event's window
# Before the gate has held a segment, how far back the ones not yet held may begin: the one being recorded and one
# being spooled, each at most as long as a segment may be (longer ones are refused: shared/protocol/ingest.py)
UNHELD_SPAN_US = 2 * MAX_SEGMENT_US

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
    recorded_until_us: int | None = None  # end of the latest segment held: where the one being recorded began
    require_label: bool = False  # objects mode
    label_grace_us: int = int(DEFAULT_LABEL_GRACE_S * 1_000_000)
    verdicts_expected: bool = True  # False: no verdict can come now (the store is out of reach)
    # event start -> the store's verdict: a label, or None ("analysed, none found": its footage goes)
    labels: dict[int, str | None] = field(default_factory=dict)
    awaiting: dict[int, int] = field(default_factory=dict)  # closed events with no verdict yet, start -> end
    missed: set[int] = field(default_factory=set)  # events whose grace ended without a verdict (starts)
    kept_without_verdict: int = 0  # how many: their footage was kept as in motion mode

    def hold(self, start_us: int, end_us: int, item: T) -> None:
        self.held.append(Held(start_us, end_us, item))
        self.recorded_until_us = max(end_us, self.recorded_until_us or end_us)

    def event_started(self, start_us: int) -> None:
        self.open_since_us = start_us

    def event_finished(self, start_us: int, end_us: int) -> None:
        if self.open_since_us is not None and self.open_since_us <= start_us:
            self.open_since_us = None  # not if a later event has opened meanwhile
        self.events.append((start_us, end_us))
        if self.require_label and start_us not in self.labels:  # a label may have come while it was open
            self.awaiting[start_us] = end_us

    def event_labelled(self, start_us: int, label: str | None) -> bool:
        """The store's verdict on the event that started at ``start_us``: it found ``label`` (open or finished),
        or (None) it analysed the finished event and found none of the camera's objects. A label is never undone;
        a None counts only for a closed event whose grace has not yet run out (a verdict on an event still open
        here, or on one whose footage is already being kept without a verdict, could only lose footage that
        was not analysed). False when the verdict was not taken."""
        if label is None and (start_us in self.labels or start_us in self.missed
                              or (self.open_since_us is not None and self.open_since_us <= start_us)):
            return False
        self.labels[start_us] = label
        self.awaiting.pop(start_us, None)
        return True

    def _wants(self, start_us: int, end_us: int | None, now_us: int | None) -> bool | None:
        """Does this event (``end_us`` None: open) want footage: True, False (its verdict is None), or None
        (pending: it waits for its verdict)? ``now_us`` None: at a stop."""
        if not self.require_label:
            return True
        if start_us in self.labels:
            return self.labels[start_us] is not None
        if not self.verdicts_expected or start_us in self.missed:
            return True
        if end_us is None or now_us is None or end_us + self.label_grace_us > now_us:
            return None
        return True  # its grace is over and no verdict came: as motion mode

    def windows(self, now_us: int | None) -> tuple[list[Span], list[Span]]:
        """(wanting, pending): the rolled windows of events that want footage, and of those still waiting for
        their verdict (at a stop, where none can come any more, the caller counts those as wanting too).
        ``now_us`` None: no grace is over."""
        wanting: list[Span] = []
        pending: list[Span] = []
        for a, b in self.events:
            wants = self._wants(a, b, now_us)
            if wants is not False:
                (wanting if wants else pending).append((a - self.pre_roll_us, b + self.post_roll_us))
        if self.open_since_us is not None:
            wants = self._wants(self.open_since_us, None, now_us)
            (wanting if wants else pending).append((self.open_since_us - self.pre_roll_us, FOREVER))
        return wanting, pending

    def _expire(self, now_us: int) -> None:
        """Events whose grace ran out without a verdict are counted, once, and want footage from now on."""
        if not self.require_label:
            self.awaiting.clear()
            return
        for start_us, end_us in list(self.awaiting.items()):
            if end_us + self.label_grace_us <= now_us:
                del self.awaiting[start_us]
                self.missed.add(start_us)
                self.kept_without_verdict += 1

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
        self._expire(now_us)
        wanting, pending = self.windows(now_us)
        for h in self.held:
            span = self.wanted_span(h.start_us, h.end_us, wanting)
            waiting = self._touches(pending, h)  # an event still waiting for its verdict may want it
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
        # The segment being recorded began where the last one held ended, before now: an event whose window reaches
        # past that still wants part of it. Before any was held here (motion mode just began), the one being
        # recorded (or still being spooled) may have begun up to a whole segment_seconds before now, or more.
        coming = now_us - UNHELD_SPAN_US if self.recorded_until_us is None else min(now_us, self.recorded_until_us)
        oldest = min((h.start_us for h in still), default=coming)
        # Events that can no longer touch any segment, held or future, are forgotten; so, later, are their verdicts.
        self.events = [(a, b) for a, b in self.events if b + self.post_roll_us > oldest]
        tracked = {a for a, _ in self.events} | {self.open_since_us}
        since = min(oldest, now_us) - LABEL_MEMORY_US
        self.labels = {a: label for a, label in self.labels.items() if a in tracked or a > since}
        self.missed = {a for a in self.missed if a in tracked or a > since}
        return keep, discard

    def finish(self, now_us: int | None = None) -> tuple[list[T], list[T]]:
        """At a clean stop, after the detector has closed its last event, no event can come any more:
        (keep, discard) for everything still held. No verdict can come either: an event still waiting for
        one (within its grace at ``now_us``; any without it) wants footage as in motion mode."""
        keep, discard = self.finish_spans(now_us)
        return [item for item, _ in keep], discard

    def finish_spans(self, now_us: int | None = None) -> tuple[list[tuple[T, tuple[int, int]]], list[T]]:
        if now_us is not None:
            self._expire(now_us)
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
