"""Events: a recording timeline per camera over the last hour or day, the events in it, and their clips.

Each event shows what the store's object detector saw in it (``person 0.86``;
blank for motion nothing was recognised in) and whether it is still going on.
``o`` steps the label filter through the labels known (all → person → … → all);
the store does the filtering (``events`` with ``labels``). The highlighted event
shows its snapshot (the store's ``snapshot``: its best frame with the object's box
drawn) or, for an event without one, its thumbnail (``thumbnail``), and details;
``x`` exports its clip (a little before to a little after) to a file in the
current directory, with a progress bar. While an event is open the list reloads
every few seconds, so its label shows up as soon as the store has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Static

from console.event_view import detail_text, known_labels, label_cell, length_cell, next_label, picture_key, start_cell
from console.export_file import clip_path, export_clip
from console.formatting import clock, local_utc_offset_s, nbytes, seconds, stamp
from console.screens.base import ConsoleScreen
from console.screens.playback import PlaybackRequest, PlaybackScreen
from console.thumbnails import fetch_event_picture
from console.widgets.export_progress import ExportProgress
from console.widgets.picture import make_picture
from console.widgets.timeline_bar import TimelineBar
from shared.protocol.errors import ProtocolError
from shared.protocol.results import Event, EventPage, Timeline
from shared.query_client import StoreError

WINDOWS = {"hour": (3600, "minute"), "day": (86400, "hour")}  # window: (seconds, timeline bucket)
PRE_ROLL_US = 2_000_000  # an event's clip starts this long before it
POST_ROLL_US = 2_000_000  # and ends this long after it
PLAY_US = 60_000_000  # p plays at least this long from the pre-roll on (what happened next), up to now
MAX_EVENTS = 1000
OPEN_RELOAD_S = 2.0  # how often the list reloads while one of its events is still open
NO_EVENTS = ("No events in the last {window}. Events appear here once motion detection runs on the nodes; "
             "the timelines above show what was recorded.")
NO_LABELLED_EVENTS = ("No {label} events in the last {window}. o shows the next label; the store labels an event "
                      "once its object detector confirms what moved.")
NO_LABELS = ("no labels to filter by yet: set a camera's objects in Settings, or wait for the store to label "
             "an event")


class EventsScreen(ConsoleScreen):
    SECTION = "Events"
    CSS_PATH = "events.tcss"
    AUTO_FOCUS = "#events-table"
    BINDINGS = [
        Binding("w", "toggle_window", "Hour/day"),
        Binding("o", "next_label", "Label"),
        Binding("r", "reload", "Refresh"),
        Binding("x", "export", "Export clip"),
        Binding("p", "play", "Play"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.window = "hour"
        self.label: str | None = None  # the label filter; None: every event
        self.events: list[Event] = []
        self._labels_seen: set[str] = set()  # over every load: a filtered list no longer shows the others
        self._range = (0, 0)
        self._bars: dict[str, tuple[TimelineBar, Label]] = {}  # camera -> its timeline bar, recorded total
        self._loading = 0  # loads running
        # The picture on screen (``picture_key``), set once it is drawn: a fetch cancelled by a newer highlight
        # or a reload's redraw leaves it as it was, so the next try fetches again.
        self._picture_for: tuple[object, ...] | None = None
        self._picture_line = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="events-body"):
            with Vertical(id="events-left"):
                yield Label("", id="window-label")
                yield VerticalScroll(id="timelines")
                table: DataTable[str | Text] = DataTable(id="events-table", cursor_type="row")
                # What an operator looks for first (what was seen, is it still going on) before the motion figures.
                table.add_columns("start", "camera", "label", "length", "kind", "score", "locked")
                yield table
                yield Static("", id="events-note", classes="note-line")
            with Vertical(id="event-detail"):
                yield make_picture(id="event-thumb")
                yield Static("select an event", id="event-text")
                yield ExportProgress(id="event-export")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(OPEN_RELOAD_S, self._reload_while_open)

    def store_connected(self) -> None:
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Events: last hour / last day", "Toggle the window (key w)", self.action_toggle_window)
        yield SystemCommand("Events: next label", "Filter by the next label, then all (key o)",
                            self.action_next_label)
        yield SystemCommand("Events: refresh", "Reload timelines and events (key r)", self.action_reload)
        yield SystemCommand("Events: export clip", "Export the selected event's clip (key x)", self.action_export)
        yield SystemCommand("Events: play", "Play the selected event from its pre-roll (key p)", self.action_play)

    def action_toggle_window(self) -> None:
        self.window = "day" if self.window == "hour" else "hour"
        self.action_reload()

    def action_next_label(self) -> None:
        fleet = self.console.fleet
        settings = [c.settings for c in fleet.cameras.values()] if fleet else []
        labels = self._labels_seen | known_labels(self.events, settings)
        if not labels and self.label is None:
            self.notify(NO_LABELS, severity="warning")
            return
        self.label = next_label(self.label, labels)
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    def _reload_while_open(self) -> None:
        if self.is_current and not self._loading and any(e.open for e in self.events):
            self._load(timelines=False)

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self, timelines: bool = True) -> None:
        """Events and, unless ``timelines`` is False (the open events' reload), each camera's timeline."""
        self._loading += 1  # the open events' reload waits for this one rather than cancel it
        try:
            await self._load_now(timelines)
        finally:
            self._loading -= 1  # a count: a load cancelled by the next one ends after that one began

    async def _load_now(self, timelines: bool) -> None:
        span_s, bucket = WINDOWS[self.window]
        to_us = self.console.now_us()
        from_us = to_us - span_s * 1_000_000 if timelines else self._range[0]
        label = self.label
        if timelines:
            self._range = (from_us, to_us)
            self.query_one("#window-label", Label).update(
                Text.assemble(("last " + self.window, "bold"), f" {clock(from_us)}→{clock(to_us)} ",
                              ("█ recorded ▄ partly · gap ◆ event", "dim")))
        self.query_one("#events-table", DataTable).border_title = f" label: {label} " if label else None
        note = self.query_one("#events-note", Static)
        # Only a filtered request names labels: a store from before object detection still lists the rest.
        by_label: dict[str, Any] = {"labels": [label]} if label else {}
        try:
            listing = EventPage.from_json(
                await self.store.call("events", from_us=from_us, to_us=to_us, limit=MAX_EVENTS, **by_label))
            fleet = self.console.fleet
            cameras = sorted(set(fleet.camera_ids() if fleet else []) | {e.camera for e in listing.items})
            if timelines or cameras != list(self._bars):
                found = [Timeline.from_json(t) for t in await asyncio.gather(*(
                    self.store.call("timeline", camera=cam, from_us=from_us, to_us=to_us, bucket=bucket,
                                    utc_offset_s=local_utc_offset_s(to_us)) for cam in cameras))]
            else:
                found = None
        except (StoreError, ProtocolError) as exc:
            note.update(Text(f"cannot load events: {exc.message}", style="red"))
            return
        self.events = list(listing.items)
        self._labels_seen |= known_labels(self.events)
        if found is not None:
            await self._show_timelines(cameras, found)
        for cam, (bar, _) in self._bars.items():
            bar.events_us = tuple(e.start_us for e in self.events if e.camera == cam)
        self._show_events(listing.next is not None)

    async def _show_timelines(self, cameras: list[str], timelines: list[Timeline]) -> None:
        """Each camera's bar; the same cameras as before are updated in place (no remount, no flicker)."""
        if cameras and cameras == list(self._bars):
            for (bar, recorded), timeline in zip(self._bars.values(), timelines, strict=True):
                bar.window, bar.intervals = self._range, timeline.intervals
                recorded.update(seconds(timeline.recorded_us / 1e6))
            return
        box = self.query_one("#timelines", VerticalScroll)
        await box.remove_children()
        self._bars = {}
        rows = []
        for cam, timeline in zip(cameras, timelines, strict=True):
            bar = TimelineBar()
            bar.window = self._range
            bar.intervals = timeline.intervals
            recorded = Label(seconds(timeline.recorded_us / 1e6), classes="timeline-recorded")
            self._bars[cam] = (bar, recorded)
            rows.append(Horizontal(Label(cam, classes="timeline-camera"), bar, recorded, classes="timeline-row"))
        await box.mount_all(rows)
        if not cameras:
            await box.mount(Label("no cameras yet", classes="note-line"))

    def _show_events(self, truncated: bool) -> None:
        table = self.query_one("#events-table", DataTable)
        selected = None  # the highlighted row's event id (its row key), to keep the operator's place
        if table.row_count and table.is_valid_coordinate(table.cursor_coordinate):
            selected = int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or 0)
        table.clear()
        for e in self.events:
            length = Text(length_cell(e), style="bold yellow") if e.open else length_cell(e)
            table.add_row(start_cell(e, self.window), e.camera, label_cell(e), length, e.kind, f"{e.score:.2f}",
                          "yes" if e.locked else "", key=str(e.id))
        row = next((i for i, e in enumerate(self.events) if e.id == selected), None)
        if row is not None:
            table.move_cursor(row=row)  # a reload keeps the operator's place
        note = self.query_one("#events-note", Static)
        label = f"{self.label} " if self.label else ""
        if row is None:
            self._clear_detail()
        if not self.events:
            note.update(NO_LABELLED_EVENTS.format(label=self.label, window=self.window) if self.label
                        else NO_EVENTS.format(window=self.window))
        else:
            more = f" (the first {MAX_EVENTS}; narrow the window in Search)" if truncated else ""
            note.update(f"{len(self.events)} {label}events{more} · ↑↓ select · o label · p play · x export clip")

    def _selected(self) -> Event | None:
        table = self.query_one("#events-table", DataTable)
        if not self.events or not 0 <= table.cursor_row < len(self.events):
            return None
        return self.events[table.cursor_row]

    def _clear_detail(self) -> None:
        self.workers.cancel_group(self, "detail")
        self._picture_for = None
        self.query_one("#event-thumb").image = None  # type: ignore[attr-defined]  # textual-image's Image
        self.query_one("#event-text", Static).update("select an event")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if (selected := self._selected()) is not None:
            self._show_detail(selected)

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def _show_detail(self, event: Event) -> None:
        text = self.query_one("#event-text", Static)
        details = detail_text(event)
        if picture_key(event) == self._picture_for:
            text.update(details + self._picture_line)
            return  # the same event (reloaded, maybe grown longer or relabelled) with the same picture
        picture = "snapshot" if event.snapshot else "thumbnail"
        text.update(details + f"\nloading {picture}…")
        try:
            image, info, picture = await fetch_event_picture(self.store, event)
        except (StoreError, ProtocolError) as exc:
            text.update(details + f"\nno {picture}: {exc.message}")
            return
        self.query_one("#event-thumb").image = image  # type: ignore[attr-defined]  # textual-image's Image
        self._picture_for = picture_key(event)
        self._picture_line = f"\n{picture} at {clock(info.frame_us)}"
        text.update(details + self._picture_line)


    def action_play(self) -> None:
        if (event := self._selected()) is None:
            self.notify("select an event first", severity="warning")
            return
        self.app.push_screen(PlaybackScreen(play_request(event, self.console.now_us())))

    def action_export(self) -> None:
        if (event := self._selected()) is None:
            self.notify("select an event first", severity="warning")
            return
        self._export(event)

    @work(exclusive=True, group="export", exit_on_error=False)
    async def _export(self, event: Event) -> None:
        progress = self.query_one("#event-export", ExportProgress)
        from_us = event.start_us - PRE_ROLL_US
        to_us = max(event.end_us, event.start_us + 1) + POST_ROLL_US
        path = clip_path(Path.cwd(), event.camera, from_us)
        progress.begin(f"exporting {path.name}")
        try:
            result = await export_clip(self.store, event.camera, from_us, to_us, path, progress.advance)
        except (StoreError, ProtocolError, OSError) as exc:
            progress.fail(f"export failed: {getattr(exc, 'message', exc)}")
            return
        progress.finish(f"saved {path.name}: {nbytes(result.bytes)}, {result.frames} frames")
        self.notify(f"saved {path}", title="clip exported")


def play_request(event: Event, now_us: int) -> PlaybackRequest:
    """An event played from its pre-roll, to its post-roll or ``PLAY_US`` on, whichever is later (not past now)."""
    from_us = event.start_us - PRE_ROLL_US
    to_us = min(now_us, max(max(event.end_us, event.start_us + 1) + POST_ROLL_US, from_us + PLAY_US))
    label = f" · {label_cell(event)}" if event.label else ""
    return PlaybackRequest(event.camera, from_us, max(to_us, from_us + 1),
                           f"#{event.id} {event.kind} on {event.camera}{label} · from {stamp(event.start_us)}")
