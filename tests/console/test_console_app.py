"""The console driven by keys (Pilot) against a real store and node that have recorded a few seconds.

One store and node for the module (``recorded``); each test runs its own app. The
last test kills the store and starts it again on the same port.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from PIL import Image
from textual.widgets import DataTable, Input, Select, Static

from console.app import ConsoleApp
from console.screens.events import EventsScreen
from console.screens.fleet import FleetScreen
from console.screens.help import HelpScreen
from console.screens.live import LiveScreen
from console.screens.search import SearchScreen
from console.screens.settings import SettingsScreen
from console.widgets.camera_tile import CameraTile
from console.widgets.link_header import LinkHeader
from tests.console.canned import FLEET, CannedStore
from tests.console.conftest import RecordedSystem, wait_until
from tests.system.conftest import Processes, free_port, wait_for_health

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")  # in textual-image
SIZE = (100, 30)


def header_text(app: ConsoleApp) -> str:
    return app.screen.query_one(LinkHeader).link_text().plain


def static_text(app: ConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def table_rows(app: ConsoleApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def connected(app: ConsoleApp) -> None:
    await wait_until(lambda: app.fleet is not None and app.fleet.nodes and app.fleet.nodes[0].status != "down",
                     what="the fleet from the store")


async def test_every_screen_by_its_key_and_q_quits_promptly(recorded: RecordedSystem) -> None:
    app = ConsoleApp(recorded.store_url)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        assert isinstance(app.screen, FleetScreen)
        assert "connected" in header_text(app)
        rows = table_rows(app, "#node-table")
        assert [r[0].strip() for r in rows] == ["node0", "cam0", "cam1"]
        assert rows[1][1] in ("up", "degraded")

        await pilot.press("l")
        assert isinstance(app.screen, LiveScreen)
        tiles = list(app.screen.query(CameraTile))
        assert sorted(t.camera for t in tiles) == ["cam0", "cam1"]
        await wait_until(lambda: all(t.state == "live" for t in tiles), 10, "decoded live pictures")
        assert all(t.last_capture_us for t in tiles)

        await pilot.press("e")
        assert isinstance(app.screen, EventsScreen)
        await wait_until(lambda: len(app.screen.query(".timeline-row")) == 2, what="two timelines")
        # The synthetic cameras move all the time: each has one motion event, open since the node started.
        events = app.screen.events
        await wait_until(lambda: {e.camera for e in events if e.open} == {"cam0", "cam1"}, 20,
                         "the cameras' open motion events")
        assert {r[1]: r[3] for r in table_rows(app, "#events-table")} == {"cam0": "ongoing", "cam1": "ongoing"}
        await pilot.press("s")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press("c")
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("f")
        assert isinstance(app.screen, FleetScreen)

        started = time.monotonic()
        await pilot.press("q")
    assert time.monotonic() - started < 3.0
    assert app.return_code == 0


async def test_search_lists_segments_with_a_preview_and_reports_bad_times(recorded: RecordedSystem) -> None:
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        await pilot.press("s")
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        screen.query_one("#from", Input).value = "half an hour back"
        await pilot.pause()
        assert "is not a time" in static_text(app, "#search-error")
        screen.query_one("#from", Input).value = "5m ago"
        screen.query_one("#cameras", Input).value = "cam0"
        await pilot.pause()
        assert static_text(app, "#search-error") == ""
        await pilot.click("#run-search")
        await wait_until(lambda: len(screen.results) >= 3, what="search results")
        assert {r.camera for r in screen.results} == {"cam0"}
        assert len(table_rows(app, "#results")) == len(screen.results)
        await wait_until(lambda: screen.query_one("#search-thumb").image is not None,  # type: ignore[attr-defined]
                         what="the thumbnail of the first row")
        assert "frame at" in static_text(app, "#search-text")


def test_it_runs_under_textual_serve(recorded: RecordedSystem) -> None:
    """``textual serve`` runs the command with Textual's web driver on pipes, no terminal: it must draw."""
    env = {**os.environ, "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver", "COLUMNS": "80", "ROWS": "24"}
    proc = subprocess.Popen([sys.executable, "-m", "sht", "console", "--store", recorded.store_url], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(4)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert b"connected" in out and b"node0" in out


def insert_event(root: Path, camera: str, offset: int = 1) -> int:
    """A closed event in the index over recorded footage (at the ``offset``-th segment), as if a node sent it."""
    with sqlite3.connect(root / "index.sqlite3", timeout=10) as db:
        (start,) = db.execute("SELECT start_us FROM segments WHERE camera = ? ORDER BY start_us LIMIT 1 OFFSET ?",
                              (camera, offset)).fetchone()
        cur = db.execute("INSERT INTO events (camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, "
                         "bbox_h, thumb_us) VALUES (?, 'node0', ?, ?, 'motion', 0.87, 0.1, 0.2, 0.3, 0.4, ?)",
                         (camera, start + 500_000, start + 1_500_000, start + 1_000_000))
        return int(cur.lastrowid or 0)


async def test_an_event_shows_its_thumbnail_and_exports_a_clip_that_decodes(
        recorded: RecordedSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    event_id = insert_event(recorded.root, "cam0")
    monkeypatch.chdir(tmp_path)
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        # Beside the cameras' own open motion events; a loaded 2-core CI is slow.
        await wait_until(lambda: event_id in [e.id for e in screen.events], 20, "the event")
        row = [e.id for e in screen.events].index(event_id)
        assert table_rows(app, "#events-table")[row][1:6] == ["cam0", "", "1s", "motion", "0.87"]
        screen.query_one("#events-table", DataTable).move_cursor(row=row)
        await wait_until(lambda: f"#{event_id} motion" in static_text(app, "#event-text")
                         and "thumbnail at" in static_text(app, "#event-text"), what="the event's thumbnail")
        assert "score 0.87" in static_text(app, "#event-text")
        await pilot.press("x")
        await wait_until(lambda: "saved" in str(screen.query_one("#event-export .export-label").render()),
                         15, "the export")
    assert decoded_frames(tmp_path, "cam0") >= 10  # 1 s of event, 2 s before and after, at 5 fps


def insert_labelled_event(root: Path, camera: str, offset: int, labels: dict[str, int], snapshot: bytes | None) -> int:
    """An event as the store's object detection leaves it: label columns, event_labels rows, maybe a snapshot."""
    event_id = insert_event(root, camera, offset)
    label = max(labels, key=lambda k: labels[k])
    with sqlite3.connect(root / "index.sqlite3", timeout=10) as db:
        db.execute("UPDATE events SET label = ?, label_score = 0.93, label_x = 0.25, label_y = 0.25, label_w = 0.5, "
                   "label_h = 0.5, labels = ? WHERE id = ?", (label, json.dumps(labels), event_id))
        db.executemany("INSERT INTO event_labels (label, event_id, count) VALUES (?, ?, ?)",
                       [(name, event_id, n) for name, n in labels.items()])
        if snapshot is not None:
            db.execute("INSERT INTO event_snapshots (event_id, frame_us, width, height, jpeg) "
                       "SELECT id, start_us, 64, 48, ? FROM events WHERE id = ?", (snapshot, event_id))
    return event_id


async def test_labelled_events_show_their_label_filter_by_it_in_the_store_and_show_their_snapshot(
        recorded: RecordedSystem) -> None:
    """Issue 15: what the store's object detection writes to the index, through the real store's API."""
    red = Image.new("RGB", (64, 48), (220, 30, 30))
    buffer = io.BytesIO()
    red.save(buffer, "JPEG")
    person = insert_labelled_event(recorded.root, "cam1", 1, {"person": 2}, buffer.getvalue())
    car = insert_labelled_event(recorded.root, "cam1", 2, {"car": 1}, None)
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, EventsScreen)
        await wait_until(lambda: {person, car} <= {e.id for e in screen.events}, 20, "the labelled events")
        labels = {e.id: row[2] for e, row in zip(screen.events, table_rows(app, "#events-table"), strict=True)}
        assert (labels[person], labels[car]) == ("person 0.93", "car 0.93")
        assert all(labels[e.id] == "" for e in screen.events if e.open)  # the cameras' own: no detector here
        for key in ("o", "o"):  # all → car → person (events' labels and cam settings' default objects)
            await pilot.press(key)
        await wait_until(lambda: screen.label == "person" and [e.id for e in screen.events] == [person], 20,
                         "the store to list only the person event")
        await wait_until(lambda: "snapshot at" in static_text(app, "#event-text"), 20, "the person event's snapshot")
        assert screen.query_one("#event-thumb").image.size == (64, 48)  # type: ignore[attr-defined]  # the snapshot
        await pilot.press("o")  # → all
        await wait_until(lambda: screen.label is None and car in {e.id for e in screen.events}, 20, "every event")


def decoded_frames(directory: Path, camera: str) -> int:
    """Frames in the one clip exported to ``directory`` (and no half-written file beside it)."""
    clips = list(directory.glob(f"{camera}-*.mp4"))
    assert len(clips) == 1 and not list(directory.glob("*.part")), list(directory.iterdir())
    with av.open(str(clips[0])) as clip:
        return sum(1 for _ in clip.decode(video=0))


async def test_a_changed_setting_is_saved_and_shows_in_the_history(recorded: RecordedSystem) -> None:
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await wait_until(lambda: screen.cameras == ["cam0", "cam1"], what="the cameras' settings")
        screen.query_one("#recording_mode", Select).value = "motion"
        screen.query_one("#motion_sensitivity", Input).value = "0.8"
        assert screen.query_one("#objects", Input).value == "person"
        screen.query_one("#objects", Input).value = "person, car"
        screen.query_one("#save").scroll_visible(animate=False)  # the form is taller than the screen
        await pilot.pause()
        await pilot.click("#save")
        await wait_until(lambda: any(r[2] == "motion_sensitivity" for r in table_rows(app, "#settings-history")),
                         what="the change in the history")
        history = table_rows(app, "#settings-history")
        assert {(r[1], r[2], r[3]) for r in history} >= {("cam0", "recording_mode", '"continuous" → "motion"'),
                                                         ("cam0", "motion_sensitivity", "0.5 → 0.8"),
                                                         ("cam0", "objects", '["person"] → ["person", "car"]')}
        assert all(r[4].startswith("console:") for r in history)
        assert "pushed to node0" in static_text(app, "#settings-result")
        assert table_rows(app, "#settings-cameras")[0][:3] == ["cam0", "motion", "0.8"]
        assert "person, car" in table_rows(app, "#settings-cameras")[0]


async def test_the_header_says_the_store_is_lost_and_the_console_reconnects(recorded: RecordedSystem) -> None:
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        recorded.kill_store()
        await wait_until(lambda: app.link_status.state == "reconnecting", 10, "the link to be lost")
        assert "lost" in header_text(app) and "reconnecting" in header_text(app)
        assert "store lost" in static_text(app, "#alert-line")
        await pilot.press("s")  # screens still work while the store is away
        assert isinstance(app.screen, SearchScreen)
        await pilot.click("#run-search")
        await wait_until(lambda: "not connected" in static_text(app, "#search-error"), what="a plain error")

        recorded.start_store()
        await wait_until(lambda: app.link_status.state == "connected", 15, "the console to reconnect")
        assert "connected" in header_text(app)
        alerts = [a.text for a in app.alerts]
        assert any("reconnected" in a for a in alerts), alerts  # then, until node0 is back: node0 is down
        started = time.monotonic()
        await pilot.press("escape", "q")
    assert time.monotonic() - started < 3.0


async def test_a_store_with_authentication_wants_the_console_token(tmp_path: Path) -> None:
    """Stores check tokens by default: without one the header says why; with a viewer token it connects."""
    from store.admin.keys import KeyStore

    root, logs = tmp_path / "store", tmp_path / "logs"
    logs.mkdir()
    viewer, _ = KeyStore(root).issue("viewer", "console-test", 600)
    processes, port = Processes(logs), free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1",
                                             "--port", str(port)))
        refused = ConsoleApp(url, live_video=False)
        async with refused.run_test(size=SIZE):
            await wait_until(lambda: refused.link_status.state == "reconnecting", what="the refusal")
            assert "refused" in refused.link_status.reason
        allowed = ConsoleApp(url, token=viewer, live_video=False)
        async with allowed.run_test(size=SIZE):
            await wait_until(lambda: allowed.link_status.state == "connected", what="the token to be accepted")
    finally:
        processes.stop_all()


async def test_a_tile_says_its_node_is_unreachable_then_recovers_by_itself(recorded: RecordedSystem) -> None:
    """The fleet points cam0 at a port where nothing listens; when the node is found, the tile goes live."""
    fleet = copy.deepcopy(FLEET)
    fleet["nodes"][0]["url"] = f"http://127.0.0.1:{free_port()}"
    app = ConsoleApp(recorded.store_url, link=CannedStore(fleet))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.fleet is not None, what="the canned fleet")
        await pilot.press("l")
        tile = app.screen.query_one("#tile-cam0", CameraTile)
        await wait_until(lambda: tile.state == "unreachable", what="the tile to give up on the dead port")
        assert "retry in" in tile.status_text
        assert app.screen.query_one("#tile-cam2", CameraTile).state == "down"  # its node is down: no attempt
        tile.configure(recorded.node_url, None)  # the fleet's next answer has the node's real address
        await wait_until(lambda: tile.state == "live", 15, "the tile to reconnect and show a picture")
