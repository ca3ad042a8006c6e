"""Events: a recording timeline per camera over the last hour or day, the events in it, and their clips.

The highlighted event shows its thumbnail (the store's ``thumbnail``, a JPEG) and
details; ``x`` exports its clip (a little before to a little after) to a file
in the current directory, with a progress bar.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Static

from console.export_file import clip_path, export_clip
from console.formatting import clock, local_utc_offset_s, nbytes, seconds, stamp
from console.screens.base import ConsoleScreen
from console.thumbnails import fetch_thumbnail
from console.widgets.export_progress import ExportProgress
from console.widgets.picture import make_picture
from console.widgets.timeline_bar import TimelineBar
from shared.protocol.errors import ProtocolError
from shared.protocol.results import Event, EventPage, Timeline
from shared.query_client import StoreError

WINDOWS = {"hour": (3600, "minute"), "day": (86400, "hour")}  # window: (seconds, timeline bucket)
PRE_ROLL_US = 2_000_000  # an event's clip starts this long before it
POST_ROLL_US = 2_000_000  # and ends this long after it
MAX_EVENTS = 1000
NO_EVENTS = ("No events in the last {window}. Events appear here once motion detection runs on the nodes; "
             "the timelines above show what was recorded.")


class EventsScreen(ConsoleScreen):
    SECTION = "Events"
    CSS_PATH = "events.tcss"
    AUTO_FOCUS = "#events-table"
    BINDINGS = [
        Binding("w", "toggle_window", "Hour/day"),
        Binding("r", "reload", "Refresh"),
        Binding("x", "export", "Export clip"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.window = "hour"
        self.events: list[Event] = []
        self._range = (0, 0)

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="events-body"):
            with Vertical(id="events-left"):
                yield Label("", id="window-label")
                yield VerticalScroll(id="timelines")
                table: DataTable[str | Text] = DataTable(id="events-table", cursor_type="row")
                table.add_columns("start", "camera", "kind", "score", "length", "locked")
                yield table
                yield Static("", id="events-note", classes="note-line")
            with Vertical(id="event-detail"):
                yield make_picture(id="event-thumb")
                yield Static("select an event", id="event-text")
                yield ExportProgress(id="event-export")

    def store_connected(self) -> None:
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Events: last hour / last day", "Toggle the window (key w)", self.action_toggle_window)
        yield SystemCommand("Events: refresh", "Reload timelines and events (key r)", self.action_reload)
        yield SystemCommand("Events: export clip", "Export the selected event's clip (key x)", self.action_export)

    def action_toggle_window(self) -> None:
        self.window = "day" if self.window == "hour" else "hour"
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        span_s, bucket = WINDOWS[self.window]
        to_us = self.console.now_us()
        from_us = to_us - span_s * 1_000_000
        self._range = (from_us, to_us)
        self.query_one("#window-label", Label).update(
            Text.assemble(("last " + self.window, "bold"), f" {clock(from_us)}→{clock(to_us)} ",
                          ("█ recorded ▄ partly · gap ◆ event", "dim")))
        note = self.query_one("#events-note", Static)
        try:
            listing = EventPage.from_json(
                await self.store.call("events", from_us=from_us, to_us=to_us, limit=MAX_EVENTS))
            fleet = self.console.fleet
            cameras = sorted(set(fleet.camera_ids() if fleet else []) | {e.camera for e in listing.items})
            timelines = [Timeline.from_json(t) for t in await asyncio.gather(*(
                self.store.call("timeline", camera=cam, from_us=from_us, to_us=to_us, bucket=bucket,
                                utc_offset_s=local_utc_offset_s(to_us)) for cam in cameras))]
        except (StoreError, ProtocolError) as exc:
            note.update(Text(f"cannot load events: {exc.message}", style="red"))
            return
        self.events = list(listing.items)
        await self._show_timelines(cameras, timelines)
        self._show_events(listing.next is not None)

    async def _show_timelines(self, cameras: list[str], timelines: list[Timeline]) -> None:
        box = self.query_one("#timelines", VerticalScroll)
        await box.remove_children()
        rows = []
        for cam, timeline in zip(cameras, timelines, strict=True):
            bar = TimelineBar()
            bar.window = self._range
            bar.intervals = timeline.intervals
            bar.events_us = tuple(e.start_us for e in self.events if e.camera == cam)
            recorded = Label(seconds(timeline.recorded_us / 1e6), classes="timeline-recorded")
            rows.append(Horizontal(Label(cam, classes="timeline-camera"), bar, recorded, classes="timeline-row"))
        await box.mount_all(rows)
        if not cameras:
            await box.mount(Label("no cameras yet", classes="note-line"))

    def _show_events(self, truncated: bool) -> None:
        table = self.query_one("#events-table", DataTable)
        table.clear()
        for e in self.events:
            table.add_row(stamp(e.start_us), e.camera, e.kind, f"{e.score:.2f}",
                          seconds((e.end_us - e.start_us) / 1e6), "yes" if e.locked else "", key=str(e.id))
        note = self.query_one("#events-note", Static)
        if not self.events:
            note.update(NO_EVENTS.format(window=self.window))
        else:
            more = f" (the first {MAX_EVENTS}; narrow the window in Search)" if truncated else ""
            note.update(f"{len(self.events)} events{more} · enter/↑↓ to select · x exports the clip")

    def _selected(self) -> Event | None:
        table = self.query_one("#events-table", DataTable)
        if not self.events or not 0 <= table.cursor_row < len(self.events):
            return None
        return self.events[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if (selected := self._selected()) is not None:
            self._show_detail(selected)

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def _show_detail(self, event: Event) -> None:
        text = self.query_one("#event-text", Static)
        bbox = event.bbox
        box = f"\nbox x{bbox[0]:.2f} y{bbox[1]:.2f} w{bbox[2]:.2f} h{bbox[3]:.2f}" if bbox else ""
        details = (f"#{event.id} {event.kind} on {event.camera} ({event.node})\n"
                   f"{stamp(event.start_us)} → {clock(event.end_us)}\n"
                   f"score {event.score:.2f}{' · locked' if event.locked else ''}{box}")
        text.update(details + "\nloading thumbnail…")
        at = event.thumb_us or event.start_us
        try:
            image, info = await fetch_thumbnail(self.store, event.camera, at)
        except (StoreError, ProtocolError) as exc:
            text.update(details + f"\nno thumbnail: {exc.message}")
            return
        self.query_one("#event-thumb").image = image  # type: ignore[attr-defined]  # textual-image's Image
        text.update(details + f"\nframe at {clock(info.frame_us)} · x: export clip")

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
