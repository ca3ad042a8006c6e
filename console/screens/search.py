"""Search: segments or events by camera(s) and time, a picture of the selected row (an event's snapshot where
it has one), events' labels, clip export.

Times take the CLI's forms (``shared.timespec.parse_time``: ISO 8601, ``10m ago``,
``today 08:00``, ``now`` …); a time that does not parse is reported under the
inputs as you type. ``x`` exports the selected row's range, ``X`` the whole
searched range of a single camera.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from console.event_view import label_cell, length_cell
from console.export_file import clip_path, export_clip
from console.formatting import clock, nbytes, stamp
from console.screens.base import ConsoleScreen
from console.screens.events import PLAY_US, POST_ROLL_US, PRE_ROLL_US, play_request
from console.screens.playback import PlaybackRequest, PlaybackScreen
from console.thumbnails import fetch_event_picture, fetch_thumbnail
from console.widgets.export_progress import ExportProgress
from console.widgets.picture import make_picture
from shared.protocol.errors import ProtocolError
from shared.protocol.query import MAX_EXPORT_US
from shared.protocol.results import Event, EventPage, Segment, SegmentPage
from shared.query_client import StoreError
from shared.timespec import TimeSpecError, parse_time

MAX_RESULTS = 5000
KINDS: list[tuple[str, str]] = [("segments", "segments"), ("events, any kind", "events"),
                                ("events: motion", "events:motion")]


def parse_cameras(text: str) -> list[str]:
    return [c for c in re.split(r"[,\s]+", text.strip()) if c]


class SearchScreen(ConsoleScreen):
    SECTION = "Search"
    CSS_PATH = "search.tcss"
    AUTO_FOCUS = "#results"
    BINDINGS = [
        Binding("x", "export_row", "Export row"),
        Binding("X", "export_range", "Export range", key_display="X"),
        Binding("p", "play", "Play"),
        Binding("escape", "leave_input", "Leave field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.results: list[Segment] | list[Event] = []
        self.method = "segments"
        self._searched: tuple[list[str], int, int] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="search-form"):
            with Horizontal(classes="form-row"):
                yield Label("cameras", classes="form-label")
                yield Input(placeholder="all (or cam0, cam1)", id="cameras", compact=True)
                yield Label("find", classes="form-label")
                yield Select(KINDS, value="segments", allow_blank=False, id="kind", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("from", classes="form-label")
                yield Input("1h ago", id="from", compact=True)
                yield Label("to", classes="form-label")
                yield Input("now", id="to", compact=True)
                yield Button("Search", id="run-search", compact=True, variant="primary")
            yield Static("", id="search-error", classes="error-line")
        with Horizontal(id="search-body"):
            yield DataTable(id="results", cursor_type="row")
            with Vertical(id="search-preview"):
                yield make_picture(id="search-thumb")
                yield Static("run a search: enter in a field, or the Search button", id="search-text")
                yield ExportProgress(id="search-export")

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Search: run", "Search with the current fields", self.action_search)
        yield SystemCommand("Search: export row", "Export the selected row's clip (key x)", self.action_export_row)
        yield SystemCommand("Search: play", "Play the selected row (key p)", self.action_play)
        yield SystemCommand("Search: export range", "Export the whole searched range of one camera (key X)",
                            self.action_export_range)

    def action_leave_input(self) -> None:
        self.query_one("#results", DataTable).focus()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.console.now_us() / 1e6, UTC)

    def _check_times(self) -> tuple[int, int] | None:
        """Both times, or None with the reason shown under the inputs."""
        error = self.query_one("#search-error", Static)
        values: dict[str, int] = {}
        for field in ("from", "to"):
            box = self.query_one(f"#{field}", Input)
            try:
                values[field] = parse_time(box.value, now=self._now())
                box.remove_class("-invalid")
            except TimeSpecError as exc:
                box.add_class("-invalid")
                error.update(Text(f"{field}: {exc}", style="red"))
                return None
        if values["to"] <= values["from"]:
            error.update(Text("to must be after from", style="red"))
            return None
        error.update("")
        return values["from"], values["to"]

    @on(Input.Changed, "#from, #to")
    def _time_edited(self) -> None:
        self._check_times()

    @on(Input.Submitted)
    @on(Button.Pressed, "#run-search")
    def action_search(self) -> None:
        self._search()

    @work(exclusive=True, group="search", exit_on_error=False)
    async def _search(self) -> None:
        if (times := self._check_times()) is None:
            return
        from_us, to_us = times
        cameras = parse_cameras(self.query_one("#cameras", Input).value)
        choice = str(self.query_one("#kind", Select).value)
        method, _, kind = choice.partition(":")
        params: dict[str, Any] = {"cameras": cameras, "from_us": from_us, "to_us": to_us, "limit": MAX_RESULTS}
        if kind:
            params["kind"] = kind
        error = self.query_one("#search-error", Static)
        error.update(Text("searching…", style="dim"))
        try:
            answer = await self.store.call(method, **params)
            page = EventPage.from_json(answer) if method == "events" else SegmentPage.from_json(answer)
        except (StoreError, ProtocolError) as exc:
            error.update(Text(exc.message + (f" ({exc.field})" if exc.field else ""), style="red"))
            return
        self.method, self.results = method, list(page.items)  # type: ignore[assignment]  # one kind per page
        self._searched = (cameras, from_us, to_us)
        more = f"; only the first {MAX_RESULTS} shown, narrow the range" if page.next else ""
        error.update(Text(f"{len(self.results)} {method} from {stamp(from_us)} to {stamp(to_us)}{more}",
                          style="dim"))
        self._fill_table()

    def _fill_table(self) -> None:
        table = self.query_one("#results", DataTable)
        table.clear(columns=True)
        if self.method == "events":
            table.add_columns("start", "camera", "label", "length", "kind", "score")
        else:
            table.add_columns("start", "camera", "length", "frames", "size", "node")
        for item in self.results:
            if isinstance(item, Event):
                table.add_row(stamp(item.start_us), item.camera, label_cell(item), length_cell(item), item.kind,
                              f"{item.score:.2f}")
            else:
                table.add_row(stamp(item.start_us), item.camera, f"{(item.end_us - item.start_us) / 1e6:.1f}s",
                              str(item.frames), nbytes(item.bytes), item.node)
        if not self.results:
            self.query_one("#search-text", Static).update("nothing found in that range")

    def _selected(self) -> Segment | Event | None:
        row = self.query_one("#results", DataTable).cursor_row
        return self.results[row] if self.results and 0 <= row < len(self.results) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if (item := self._selected()) is not None:
            self._preview(item)

    @staticmethod
    def _item_range(item: Segment | Event) -> tuple[int, int]:
        if isinstance(item, Event):
            return item.start_us - PRE_ROLL_US, max(item.end_us, item.start_us + 1) + POST_ROLL_US
        return item.start_us, item.end_us

    @work(exclusive=True, group="preview", exit_on_error=False)
    async def _preview(self, item: Segment | Event) -> None:
        text = self.query_one("#search-text", Static)
        if isinstance(item, Event):
            label = f" · {label_cell(item)}" if item.label else ""
            details = f"#{item.id} {item.kind} {item.score:.2f} on {item.camera}{label}"
        else:
            details = f"{item.camera} segment, {item.frames} frames from {item.node}"
        details += f"\n{stamp(item.start_us)} → {clock(item.end_us)}"
        text.update(details)
        try:
            if isinstance(item, Event):
                image, info, picture = await fetch_event_picture(self.store, item)
            else:
                image, info = await fetch_thumbnail(self.store, item.camera, (item.start_us + item.end_us) // 2)
                picture = "frame"
        except (StoreError, ProtocolError) as exc:
            text.update(details + f"\nno picture: {exc.message}")
            return
        self.query_one("#search-thumb").image = image  # type: ignore[attr-defined]  # textual-image's Image
        text.update(details + f"\n{picture} at {clock(info.frame_us)} · p: play · x: export")

    def action_play(self) -> None:
        if (item := self._selected()) is None:
            self.notify("search, then select a row to play", severity="warning")
            return
        now_us = self.console.now_us()
        if isinstance(item, Event):
            request = play_request(item, now_us)
        else:
            to_us = min(now_us, max(item.end_us, item.start_us + PLAY_US))
            request = PlaybackRequest(item.camera, item.start_us, max(to_us, item.end_us),
                                      f"{item.camera} from {stamp(item.start_us)} (segment from {item.node})")
        self.app.push_screen(PlaybackScreen(request))

    def action_export_row(self) -> None:
        if (item := self._selected()) is None:
            self.notify("search, then select a row to export", severity="warning")
            return
        self._export(item.camera, *self._item_range(item))

    def action_export_range(self) -> None:
        if self._searched is None:
            self.notify("search first", severity="warning")
            return
        cameras, from_us, to_us = self._searched
        found = sorted({r.camera for r in self.results})
        camera = cameras[0] if len(cameras) == 1 else found[0] if len(found) == 1 else None
        if camera is None:
            self.notify("exporting a range needs one camera: name it in the cameras field", severity="warning")
        elif to_us - from_us > MAX_EXPORT_US:
            self.notify("an export covers at most 24 hours: narrow the range", severity="warning")
        else:
            self._export(camera, from_us, to_us)

    @work(exclusive=True, group="export", exit_on_error=False)
    async def _export(self, camera: str, from_us: int, to_us: int) -> None:
        progress = self.query_one("#search-export", ExportProgress)
        path = clip_path(Path.cwd(), camera, from_us)
        progress.begin(f"exporting {path.name}")
        try:
            result = await export_clip(self.store, camera, from_us, to_us, path, progress.advance)
        except (StoreError, ProtocolError, OSError) as exc:
            progress.fail(f"export failed: {getattr(exc, 'message', exc)}")
            return
        progress.finish(f"saved {path.name}: {nbytes(result.bytes)}, {result.frames} frames")
        self.notify(f"saved {path}", title="clip exported")
