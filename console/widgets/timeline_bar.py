"""A one-line bar of one camera's recording over a window: recorded, partly recorded, gap, events."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

FULL, PART, GAP, EVENT = "█", "▄", "·", "◆"
STYLE = {FULL: "green", PART: "green", GAP: "red dim", EVENT: "bold yellow"}


def coverage(intervals: Sequence[Sequence[int]], start: int, end: int) -> float:
    """Share of ``[start, end)`` covered by the (sorted, disjoint) intervals."""
    if end <= start:
        return 0.0
    covered = sum(max(0, min(e, end) - max(s, start)) for s, e in intervals)
    return covered / (end - start)


def timeline_cells(from_us: int, to_us: int, intervals: Sequence[Sequence[int]], events_us: Sequence[int],
                   width: int) -> str:
    """``width`` characters: full block where recorded, half where partly, a dot for a gap, ◆ at events."""
    if width <= 0 or to_us <= from_us:
        return ""
    span = to_us - from_us
    cells = []
    for i in range(width):
        start, end = from_us + span * i // width, from_us + span * (i + 1) // width
        share = coverage(intervals, start, end)
        cells.append(FULL if share >= 0.95 else PART if share > 0 else GAP)
    for at in events_us:
        if from_us <= at < to_us:
            cells[min(width - 1, (at - from_us) * width // span)] = EVENT
    return "".join(cells)


class TimelineBar(Widget):
    """Attributes down: set ``window`` (from, to), ``intervals`` and ``events_us``; it draws to its width."""

    window: reactive[tuple[int, int]] = reactive((0, 0))
    intervals: reactive[tuple[tuple[int, int], ...]] = reactive(())
    events_us: reactive[tuple[int, ...]] = reactive(())

    def render(self) -> Text:
        cells = timeline_cells(*self.window, self.intervals, self.events_us, self.size.width)
        text = Text(no_wrap=True)
        for ch in cells:
            text.append(ch, STYLE[ch])
        return text
