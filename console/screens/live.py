"""Live: a tile per camera showing its live picture (keyframes, 1–2 a second).

Tiles stream only while this screen is shown: leaving it stops every stream, so
the console costs the nodes and the CPU nothing for pictures nobody sees.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.widgets import Label

from console.fleet_model import FleetSnapshot
from console.screens.base import ConsoleScreen
from console.widgets.camera_tile import CameraTile

MIN_TILE_WIDTH = 34
MIN_TILE_HEIGHT = 8


class LiveScreen(ConsoleScreen):
    SECTION = "Live"
    CSS_PATH = "live.tcss"

    def __init__(self) -> None:
        super().__init__()
        self._tiles: dict[str, CameraTile] = {}
        self._showing = False

    def compose_body(self) -> ComposeResult:
        yield Label("waiting for the store to list cameras…", id="live-empty", classes="note-line")
        with VerticalScroll(id="tiles-scroll"):
            yield Grid(id="tiles")

    def on_mount(self) -> None:
        super().on_mount()
        self.watch(self.app, "fleet", self._fleet_changed)

    def _fleet_changed(self, snapshot: FleetSnapshot | None) -> None:
        if snapshot is None:
            return
        empty = self.query_one("#live-empty", Label)
        empty.display = not snapshot.cameras
        empty.update("no cameras yet: the store knows none" if not snapshot.cameras else "")
        new = [CameraTile(cam, headers=self.console.live_headers, ca=self.console.ca, id=f"tile-{cam}")
               for cam in snapshot.cameras if cam not in self._tiles]
        if new:
            self._tiles.update((t.camera, t) for t in new)
            self.query_one("#tiles", Grid).mount_all(new)
            self.call_after_refresh(self._layout)
        for cam, tile in self._tiles.items():
            view = snapshot.cameras.get(cam)
            down = None if view is not None and view.status != "down" else (view.reason if view else "gone")
            tile.configure(snapshot.node_url_of(cam), down)
        if new and self._showing:
            self.call_after_refresh(self._start, new)

    def _start(self, tiles: list[CameraTile]) -> None:
        if self._showing and self.console.live_video:
            for tile in tiles:
                tile.start()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self._showing = True
        self._start(list(self._tiles.values()))

    def on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        self._showing = False
        for tile in self._tiles.values():
            tile.stop()

    def on_resize(self, event: events.Resize) -> None:
        self._layout()

    def _layout(self) -> None:
        """As many columns as fit; rows share the height, but never shorter than MIN_TILE_HEIGHT."""
        n = len(self._tiles)
        if n == 0:
            return
        scroll = self.query_one("#tiles-scroll")
        columns = max(1, min(n, scroll.size.width // MIN_TILE_WIDTH))
        rows = -(-n // columns)
        height = max(MIN_TILE_HEIGHT, scroll.size.height // rows)
        grid = self.query_one("#tiles", Grid)
        grid.styles.grid_size_columns = columns
        grid.styles.grid_rows = str(height)
