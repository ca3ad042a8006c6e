"""Playback: recorded footage of one camera in a large picture, from the Events and Search screens (``p``).

The footage comes from the store (``console.playback_source``: its HTTP playback,
else an export to a temporary file) and is decoded by a ``console.playback.Player``
in a thread worker, at most ``DISPLAY_FPS`` pictures a second, each converted
once at the picture's size. Keys: space pause, ←/→ ±10 s, ``,``/``.`` one frame
back/forward when paused, ``+``/``-`` speed (1, 2, 4, 8x; above 2x keyframes
only), ``x`` exports the clip being played, ``esc`` back. The status line says the
capture time of the picture shown, the speed, and the pictures shown a second.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Center
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Label, Static
from textual.worker import get_current_worker

from console.export_file import clip_path, export_clip
from console.formatting import clock, nbytes, stamp
from console.live_stream import MAX_WIDTH
from console.playback import SEEK_S, Picture, PlaybackError, PlaybackSource, Player
from console.playback_source import store_source
from console.screens.base import ConsoleScreen
from console.widgets.export_progress import ExportProgress
from console.widgets.halfblock import HalfBlockPicture, halfblock_strips
from console.widgets.picture import cell_pixels, fit_cells, make_picture, picture_class
from shared.protocol.errors import ProtocolError
from shared.query_client import StoreError

RATE_WINDOW_S = 2.0  # pictures a second, over this long
HALF_BLOCK_RENDERERS = ("HalfcellImage", "UnicodeImage")  # two pixels a cell, one above the other


@dataclass(frozen=True)
class PlaybackRequest:
    """What to play: a camera's range, and a line saying what it is (an event, a search result)."""

    camera: str
    from_us: int
    to_us: int
    title: str


def capture_clock(us: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm`` local: frames are a few tens of milliseconds apart."""
    return datetime.fromtimestamp(us / 1e6).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class PlaybackScreen(ConsoleScreen):
    SECTION = "Playback"
    CSS_PATH = "playback.tcss"
    BINDINGS = [
        Binding("space", "pause", "Pause"),
        Binding("left", "seek(-1)", "-10 s", key_display="←"),
        Binding("right", "seek(1)", "+10 s", key_display="→"),
        Binding("comma", "step(-1)", "Frame back", key_display=","),
        Binding("full_stop", "step(1)", "Frame", key_display="."),
        Binding("plus,equals_sign", "speed(1)", "Faster", key_display="+"),
        Binding("minus", "speed(-1)", "Slower", key_display="-"),
        Binding("x", "export", "Export"),
        Binding("escape", "back", "Back"),
    ]

    class Shown(Message):
        def __init__(self, picture: Picture, strips: list[Strip] | None) -> None:
            super().__init__()
            self.picture, self.strips = picture, strips  # strips: the half blocks of a new picture

    class Failed(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, request: PlaybackRequest) -> None:
        super().__init__()
        self.request = request
        self.player: Player | None = None
        self.source: PlaybackSource | None = None
        self.picture: Picture | None = None  # the last one shown
        self.first_picture: Picture | None = None
        self.pictures_shown = 0  # new pictures put on screen
        self.shown_at: deque[float] = deque()  # when each new picture was put on screen
        self.error: str | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="sht-playback-"))
        # Half blocks drawn by console.widgets.halfblock (lines built in the decoding thread); Kitty and Sixel by
        # textual-image, as the live tiles draw them.
        self._halfblock = picture_class().__name__ in HALF_BLOCK_RENDERERS
        self._strips_for: object = None  # the image the last strips were built from (decoding thread)

    def compose_body(self) -> ComposeResult:
        yield Label(Text(self.request.title, style="bold"), id="playback-title")
        with Center(id="playback-frame"):
            yield HalfBlockPicture(id="playback-picture") if self._halfblock else make_picture(id="playback-picture")
        yield Static("opening the footage…", id="playback-status")
        yield ExportProgress(id="playback-export")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(1.0, self._show_status)
        self._open()

    def on_unmount(self) -> None:
        self.workers.cancel_node(self)
        if self.source is not None and self.source.cleanup is not None:
            self.source.cleanup()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Playback: pause / play", "Pause or play (key space)", self.action_pause)
        yield SystemCommand("Playback: export clip", "Export the clip being played (key x)", self.action_export)

    # -- opening and playing ------------------------------------------------------------------------------------

    @work(exclusive=True, group="open", exit_on_error=False)
    async def _open(self) -> None:
        request = self.request
        progress = self.query_one("#playback-export", ExportProgress)
        progress.begin("fetching the footage…")  # an export's progress, where the store has no HTTP playback
        try:
            source = await store_source(self.store, self.console.link_status.url, self.console.live_headers,
                                        self.console.ca, request.camera, request.from_us, request.to_us,
                                        self._workdir, progress.advance)
        except (StoreError, ProtocolError, PlaybackError, OSError) as exc:
            self._fail(f"cannot play {request.camera}: {getattr(exc, 'message', exc)}")
            return
        progress.remove_class("-active")
        self.source = source
        self.player = Player(source, self._shown_from_thread, size=self._pixels(*self._box(16, 9)))
        self._play(self.player)

    def _shown_from_thread(self, picture: Picture) -> None:
        strips = None
        if self._halfblock and picture.image is not self._strips_for:
            strips, self._strips_for = halfblock_strips(picture.image), picture.image
        self.post_message(self.Shown(picture, strips))

    @work(thread=True, exclusive=True, group="play", exit_on_error=False)
    def _play(self, player: Player) -> None:
        worker = get_current_worker()
        try:
            player.run(lambda: worker.is_cancelled)
        except PlaybackError as exc:
            self.post_message(self.Failed(str(exc)))

    def on_playback_screen_failed(self, message: Failed) -> None:
        self._fail(message.reason)

    def _fail(self, reason: str) -> None:
        self.error = reason
        self.query_one("#playback-status", Static).update(Text(reason, style="red"))

    def on_playback_screen_shown(self, message: Shown) -> None:
        picture = message.picture
        widget = self.query_one("#playback-picture")
        if self.picture is None or picture.image is not self.picture.image:
            if self.player is not None and self.player.video_size is not None:
                self._fit(*self.player.video_size)
            if isinstance(widget, HalfBlockPicture):
                if message.strips is not None:
                    widget.show(picture.image, message.strips)
            else:
                widget.image = picture.image  # type: ignore[attr-defined]  # textual-image's Image
            self.shown_at.append(time.monotonic())
            self.pictures_shown += 1
        self.picture = picture
        self.first_picture = self.first_picture or picture
        self._show_status()

    def pictures_per_s(self) -> float:
        now = time.monotonic()
        while self.shown_at and self.shown_at[0] < now - RATE_WINDOW_S:
            self.shown_at.popleft()
        return len(self.shown_at) / RATE_WINDOW_S

    def _show_status(self) -> None:
        picture = self.picture
        if self.error is not None or picture is None:
            return
        state = "end" if picture.ended else "paused" if picture.paused else "playing"
        rate = 0.0 if picture.paused or picture.ended else self.pictures_per_s()
        via = self.source.via if self.source is not None else ""
        self.query_one("#playback-status", Static).update(Text.assemble(
            (self.request.camera, "bold"), "  ", (capture_clock(picture.capture_us), "bold cyan"),
            f"  {picture.speed}×  ", (state, "yellow" if state != "playing" else "green"),
            f"  {rate:.1f} pictures/s", (f"  via {via}", "dim")))

    # -- the picture's size -------------------------------------------------------------------------------------

    def _box(self, width: int, height: int) -> tuple[int, int]:
        """The largest box of cells in the frame that keeps the footage's shape."""
        frame = self.query_one("#playback-frame")
        return fit_cells(width, height, max(1, frame.content_size.width), max(1, frame.content_size.height))

    def _pixels(self, columns: int, rows: int) -> tuple[int, int]:
        """The picture's size in pixels for the renderer in use: half blocks have two pixels a cell."""
        if self._halfblock:
            return columns, rows * 2
        cell_w, cell_h = cell_pixels()
        width, height = columns * cell_w, rows * cell_h
        if width > MAX_WIDTH:  # Kitty and Sixel: the terminal scales it up; not measured here (no such terminal)
            width, height = MAX_WIDTH, max(2, height * MAX_WIDTH // width)
        return width, height

    def _fit(self, width: int, height: int) -> None:
        columns, rows = self._box(width, height)
        picture = self.query_one("#playback-picture")
        if (picture.styles.width, picture.styles.height) != (columns, rows):
            picture.styles.width, picture.styles.height = columns, rows
        if self.player is not None:
            self.player.resize(*self._pixels(columns, rows))

    def on_resize(self, event: events.Resize) -> None:
        if self.player is not None and self.player.video_size is not None:
            self.call_after_refresh(self._fit, *self.player.video_size)

    def on_screen_suspend(self) -> None:
        if self.player is not None and self.picture is not None and not self.picture.paused:
            self.player.toggle_pause()  # nobody is watching: stop decoding

    # -- keys ---------------------------------------------------------------------------------------------------

    def action_pause(self) -> None:
        if self.player is not None:
            self.player.toggle_pause()

    def action_seek(self, direction: int) -> None:
        if self.player is not None:
            self.player.seek(direction * SEEK_S)

    def action_step(self, frames: int) -> None:
        if self.player is None:
            return
        if self.picture is not None and not self.picture.paused:
            self.notify("pause first (space), then step frame by frame", severity="warning")
            return
        self.player.step(frames)

    def action_speed(self, steps: int) -> None:
        if self.player is not None:
            self.player.change_speed(steps)

    def action_back(self) -> None:
        self.dismiss()

    def action_export(self) -> None:
        self._export()

    @work(exclusive=True, group="export", exit_on_error=False)
    async def _export(self) -> None:
        request = self.request
        progress = self.query_one("#playback-export", ExportProgress)
        path = clip_path(Path.cwd(), request.camera, request.from_us)
        progress.begin(f"exporting {path.name}")
        try:
            result = await export_clip(self.store, request.camera, request.from_us, request.to_us, path,
                                       progress.advance)
        except (StoreError, ProtocolError, OSError) as exc:
            progress.fail(f"export failed: {getattr(exc, 'message', exc)}")
            return
        progress.finish(f"saved {path.name}: {nbytes(result.bytes)}, {result.frames} frames, "
                        f"{stamp(result.start_us)} → {clock(result.end_us)}")
        self.notify(f"saved {path}", title="clip exported")
