"""A screenshot of the Playback screen: canned store answers, a known clip, paused on its first frame, UTC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

import console.playback_source
from console.app import ConsoleApp
from console.screens.events import PRE_ROLL_US, EventsScreen
from console.screens.playback import PlaybackScreen
from tests.console.canned import EVENTS, NOW_US, SECOND, CannedStore
from tests.console.conftest import wait_until
from tests.console.playback_clip import make_clip
from tests.console.test_console_snapshots import SIZE, utc  # noqa: F401  (utc: the fixture, used by name)

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")
CLIP_START_US = EVENTS[0]["start_us"] - PRE_ROLL_US


class ExportingStore(CannedStore):
    """The canned store, and an ``export`` that sends a known clip (as a store without HTTP playback does)."""

    def __init__(self, clip: bytes) -> None:
        super().__init__()
        self.clip = clip

    async def call(self, method: str, *, on_chunk: Callable[[bytes], object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None, **params: Any) -> Any:
        if method != "export":
            return await super().call(method, on_chunk=on_chunk, on_progress=on_progress, **params)
        assert on_chunk is not None
        for i in range(0, len(self.clip), 65536):
            on_chunk(self.clip[i:i + 65536])
        return {"camera": params["camera"], "start_us": CLIP_START_US, "end_us": CLIP_START_US + 24 * SECOND,
                "frames": 360, "segments": 3, "bytes": len(self.clip), "content_type": "video/mp4"}


def test_playback_paused_on_the_first_frame(snap_compare: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.playback_source, "fetch_sidecar", lambda url, headers, ca: None)
    clip = make_clip(tmp_path / "clip.mp4").read_bytes()
    app = ConsoleApp("http://127.0.0.1:8100", link=ExportingStore(clip), live_video=False, clock=lambda: NOW_US)

    def settled(screen: PlaybackScreen) -> bool:
        """Paused on the first frame, at the picture's final size."""
        picture, player = screen.picture, screen.player
        if picture is None or player is None or player.video_size is None:
            return False
        wanted = screen._pixels(*screen._box(*player.video_size))
        return picture.paused and picture.media_s == 0.0 and picture.image.size == wanted

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(lambda: pilot.app.fleet is not None, what="the canned fleet")
        await pilot.press("e")
        await wait_until(lambda: isinstance(pilot.app.screen, EventsScreen) and len(pilot.app.screen.events) == 3,
                         what="the events")
        await pilot.press("p")
        screen = pilot.app.screen
        assert isinstance(screen, PlaybackScreen)
        await wait_until(lambda: screen.picture is not None, 20, "the first picture")
        await pilot.press("space", "left")  # pause, then back to the start: the first frame, whatever the timing
        await wait_until(lambda: settled(screen), 20, "the first frame, paused")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
