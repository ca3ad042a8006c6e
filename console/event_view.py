"""What the Events screen says about one event: its label, its length (or that it is still going on), its
details, and which labels the label filter steps through. Pure functions, no Textual."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from console.formatting import clock, day_clock, seconds, stamp
from shared.protocol.results import Event

ONGOING = "ongoing"


def label_cell(event: Event) -> str:
    """``person 0.86``; blank for an event nothing was recognised in (yet)."""
    if not event.label:
        return ""
    return f"{event.label} {event.label_score:.2f}" if event.label_score is not None else event.label


def start_cell(event: Event, window: str) -> str:
    """The start as the Events screen's window needs it: the time in the last hour, day and time in the last day
    (the window line above the table says which)."""
    return clock(event.start_us) if window == "hour" else day_clock(event.start_us)


def length_cell(event: Event) -> str:
    return ONGOING if event.open else seconds((event.end_us - event.start_us) / 1e6)


def _box(name: str, box: tuple[float, float, float, float] | None) -> str:
    return f"\n{name} x{box[0]:.2f} y{box[1]:.2f} w{box[2]:.2f} h{box[3]:.2f}" if box else ""


def labels_line(event: Event) -> str:
    """What the detector made of the event: its label, and every label seen (``×N``: N at once at most)."""
    if event.labels is None and not event.label:  # not analysed: detection off, an older store, or not yet
        return "\nnot analysed yet" if event.open else ""
    if not event.labels and not event.label:
        return "\nno object recognised"
    seen = ", ".join(f"{label} ×{n}" if n > 1 else label for label, n in sorted((event.labels or {}).items()))
    head = label_cell(event) or "no confirmed label"
    return f"\n{head}" + (f"\nseen: {seen}" if seen and seen != event.label else "")


def detail_text(event: Event) -> str:
    until = f"{clock(event.end_us)} so far, {ONGOING}" if event.open else clock(event.end_us)
    return (f"#{event.id} {event.kind} on {event.camera} ({event.node})\n"
            f"{stamp(event.start_us)} → {until}\n"
            f"score {event.score:.2f}{' · locked' if event.locked else ''}"
            f"{labels_line(event)}{_box('object', event.label_box)}{_box('motion', event.bbox)}")


def picture_key(event: Event) -> tuple[object, ...]:
    """What decides the event's picture: a new key means fetch it again (a snapshot is replaced when the
    store finds a better frame, so its score and box are part of it)."""
    if event.snapshot:
        return event.id, "snapshot", event.label, event.label_score, event.label_box
    return event.id, "thumbnail", event.thumb_us


def known_labels(events: Iterable[Event], camera_settings: Iterable[Mapping[str, Any]] = ()) -> set[str]:
    """The labels worth filtering by: those events carry, and those the cameras are set to look for."""
    found: set[str] = set()
    for event in events:
        found.update(event.labels or ())
        if event.label:
            found.add(event.label)
    for settings in camera_settings:
        objects = settings.get("objects")
        if isinstance(objects, list):
            found.update(o for o in objects if isinstance(o, str) and o)
    return found


def next_label(current: str | None, labels: Iterable[str]) -> str | None:
    """The label filter's next step: all → each label in order → all."""
    ordered = sorted(labels)
    if current not in ordered:
        return ordered[0] if ordered else None
    i = ordered.index(current)
    return ordered[i + 1] if i + 1 < len(ordered) else None
