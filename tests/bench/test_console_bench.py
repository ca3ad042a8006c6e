"""Smoke test of the console benchmark (bench/console.py) against the canned store, so its code cannot rot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.app import App

import bench.console as bc
from console.app import ConsoleApp
from console.widgets.camera_tile import CameraTile
from tests.console.canned import NOW_US, CannedStore, gradient

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")  # in textual-image
CAMERAS = ("cam0", "cam1", "cam2")  # the canned fleet's
SIZE = (100, 30)


def canned_app() -> ConsoleApp:
    return ConsoleApp("http://127.0.0.1:8100", link=CannedStore(), live_video=False)


async def feed_pictures(app: App[Any]) -> None:
    """Stands in for the tiles' decoders: a picture to every tile, ten times a second."""
    image = gradient(320, 180)
    while True:
        for tile in app.screen.query(CameraTile):
            tile.post_message(CameraTile.FrameReady(image, NOW_US))
        await asyncio.sleep(0.1)


async def test_measurements_and_report_on_the_canned_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHT_CONSOLE_IMAGES", "halfcell")
    paint = await bc.measure_first_paint(canned_app, CAMERAS, size=SIZE)
    assert 0 < paint.header_s <= paint.fleet_s < 10

    live = await bc.measure_live(canned_app, CAMERAS, duration=1.0, size=SIZE, require_live=False,
                                 during=feed_pictures)
    assert sorted(live.updates) == list(CAMERAS) and all(n >= 3 for n in live.updates.values())
    assert live.frames_ms and all(f > 0 for f in live.frames_ms)
    assert len(live.bytes_per_frame) >= len(live.frames_ms) and live.lag_ms and live.update_to_paint_ms
    assert 0.9 < live.window_s < 3 and live.all_live_s is None

    from textual.screen import Screen

    assert "wrapper" not in (App._display.__qualname__ + Screen._on_timer_update.__qualname__
                             + Screen._refresh_layout.__qualname__)  # the probe put Textual back
    assert "show_frame" == CameraTile.show_frame.__name__ and "bench" not in CameraTile.show_frame.__module__

    args = bc.parse_args(["--runs", "1", "--duration", "1", "--size", "100x30", "--output", str(tmp_path / "b.md")])
    assert args.size == SIZE and args.cold_runs == 1 and args.camera_size == "1280x720"
    rows = bc.rows_for([paint], [paint], live)
    verdicts = [r.ok for r in rows if r.target]  # pictures come ten times faster here than from a camera
    assert len(verdicts) == 3 and all(isinstance(ok, bool) for ok in verdicts)
    bc.print_table(rows)
    page = tmp_path / "b.md"
    page.write_text("# Benchmarks\n\n## Results\n\nsystem numbers\n\n## Soak\n\nsoak numbers\n")
    live.slow_frames, live.slow_frames_in_gc, live.gc_ms = 2, 1, [(0, 1.0), (2, 80.0)]
    notes = bc.findings(live)
    assert len(notes) == 1 and "1 of them had a full" in notes[0] and "80–80 ms" in notes[0]
    body = bc.markdown_section(rows, bc.machine_info((0.1, 0.2, 0.3)), args, [paint], [], notes)
    bc.replace_section(page, bc.SECTION, body)
    bc.replace_section(page, bc.SECTION, body)
    text = page.read_text()
    assert text.count(bc.SECTION + "\n") == 1 and "system numbers" in text and "soak numbers" in text
    assert "| frame time with 6 live tiles" in text and "textual:" in text and notes[0] in text


def test_arguments() -> None:
    assert bc.parse_args([]).size == (120, 40)
    with pytest.raises(SystemExit):
        bc.parse_args(["--size", "wide"])
    with pytest.raises(SystemExit):
        bc.parse_args(["--child-paint"])
    assert bc.pct([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and bc.pct([5.0], 99) == 5.0
