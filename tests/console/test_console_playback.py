"""Playback in the console (issue 18), driven by keys (Pilot) against a real store and node that keep recording.

``p`` on an event (Events) or a segment (Search) opens the Playback screen; the
footage comes from the store (its HTTP playback, or an export where the store has
none) and is decoded by the console. The node records 160x120 at 5 fps with a
keyframe a second, so one frame is 0.2 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

import console.playback_source
from console.app import ConsoleApp
from console.playback import PlaybackError
from console.playback_source import fetch_sidecar, recordings_url, store_source
from console.screens.events import PRE_ROLL_US, EventsScreen
from console.screens.playback import PlaybackScreen
from console.screens.search import SearchScreen
from tests.console.conftest import RecordedSystem, wait_until
from tests.console.test_console_app import SIZE, connected, decoded_frames, insert_event
from tests.system.conftest import get_json

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")  # in textual-image
FRAME_US = 200_000  # 5 fps
SLACK_US = 20_000  # capture times are not exactly a frame apart


def recorded_seconds(system: RecordedSystem, camera: str, seconds: float) -> None:
    """Wait until the store holds at least ``seconds`` of ``camera`` (2 s segments)."""
    deadline = time.monotonic() + seconds + 30
    while get_json(system.store_url + "/health")["cameras"].get(camera, {}).get("segments", 0) * 2 < seconds:
        assert time.monotonic() < deadline, "the node records too slowly"
        time.sleep(0.5)


def playback(app: ConsoleApp) -> PlaybackScreen:
    screen = app.screen
    assert isinstance(screen, PlaybackScreen), screen
    return screen


async def changed(screen: PlaybackScreen, before: object, what: str) -> None:
    """Wait for a picture that is not ``before`` (a command's answer)."""
    await wait_until(lambda: screen.picture is not None and screen.picture is not before, 20, what)


@pytest.mark.parametrize("via", ["recordings", "export"])
async def test_an_event_plays_pauses_seeks_steps_changes_speed_and_goes_back(
        recorded: RecordedSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    """Through the store's HTTP playback, and through an export as with a store that has none."""
    if via == "export":
        monkeypatch.setattr(console.playback_source, "fetch_sidecar", lambda url, headers, ca: None)
    recorded_seconds(recorded, "cam0", 20)
    event_id = insert_event(recorded.root, "cam0", 1 if via == "recordings" else 2)
    monkeypatch.chdir(tmp_path)
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        await pilot.press("e")
        events = app.screen
        assert isinstance(events, EventsScreen)
        await wait_until(lambda: event_id in [e.id for e in events.events], 20, "the event")
        event = next(e for e in events.events if e.id == event_id)
        events.query_one("#events-table", DataTable).move_cursor(row=events.events.index(event))
        await pilot.press("p")
        screen = playback(app)
        await wait_until(lambda: screen.picture is not None, 20, "the first recorded picture")
        assert screen.first_picture is not None and screen.source is not None
        first = screen.first_picture.capture_us
        assert screen.source.via == via
        from_us = event.start_us - PRE_ROLL_US
        assert from_us - 1_000_000 - FRAME_US - SLACK_US < first <= from_us  # the keyframe at or before the pre-roll
        assert screen.query_one("#playback-picture").image is not None  # type: ignore[attr-defined]

        await wait_until(lambda: screen.picture is not None and screen.picture.capture_us > first + 1_000_000, 20,
                         "a second played")
        await pilot.press("space")
        await wait_until(lambda: screen.picture is not None and screen.picture.paused, 20, "the pause")
        here = screen.picture
        assert here is not None
        await pilot.press("right")
        await changed(screen, here, "the seek forward")
        landed = screen.picture
        assert landed is not None and landed.paused
        assert here.capture_us + 10_000_000 - FRAME_US - SLACK_US < landed.capture_us <= here.capture_us + 10_000_001
        await pilot.press("full_stop")
        await changed(screen, landed, "a frame forward")
        assert screen.picture is not None
        assert abs(screen.picture.capture_us - landed.capture_us - FRAME_US) < SLACK_US  # the next frame
        stepped = screen.picture
        await pilot.press("comma")
        await changed(screen, stepped, "a frame back")
        assert screen.picture is not None and screen.picture.capture_us == landed.capture_us
        back = screen.picture
        await pilot.press("left")
        await changed(screen, back, "the seek back")
        assert screen.picture is not None
        target = landed.capture_us - 10_000_000
        assert target - FRAME_US - SLACK_US < screen.picture.capture_us <= target + 1  # (rounding to 1 µs)
        status = str(screen.query_one("#playback-status").render())
        assert "cam0" in status and "paused" in status and "1×" in status

        await pilot.press("plus", "plus")
        await wait_until(lambda: screen.picture is not None and screen.picture.speed == 4, 20, "4x")
        await pilot.press("minus")
        await wait_until(lambda: screen.picture is not None and screen.picture.speed == 2, 20, "2x")
        await pilot.press("space")
        started = screen.picture
        assert started is not None
        await wait_until(lambda: screen.picture is not None and not screen.picture.paused
                         and screen.picture.capture_us >= started.capture_us + 1_000_000, 20, "playing at 2x")
        await wait_until(lambda: "2×" in str(screen.query_one("#playback-status").render())
                         and "playing" in str(screen.query_one("#playback-status").render()), what="the status")
        assert screen.pictures_per_s() > 0

        await pilot.press("x")
        await wait_until(lambda: "saved" in str(screen.query_one("#playback-export .export-label").render()),
                         20, "the export of what is played")
        await pilot.press("escape")
        assert isinstance(app.screen, EventsScreen)
    assert decoded_frames(tmp_path, "cam0") >= 50  # what was played: 10 s or more at 5 fps


async def test_a_search_result_plays_from_its_start(recorded: RecordedSystem) -> None:
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app)
        await pilot.press("s")
        search = app.screen
        assert isinstance(search, SearchScreen)
        search.action_search()
        await wait_until(lambda: len(search.results) >= 3, 20, "search results")
        segment = search.results[1]
        search.query_one("#results", DataTable).move_cursor(row=1)
        await pilot.press("p")
        screen = playback(app)
        await wait_until(lambda: screen.picture is not None, 20, "the segment's first picture")
        assert screen.first_picture is not None
        assert screen.first_picture.capture_us == segment.start_us  # a segment starts with a keyframe
        assert segment.camera in str(screen.query_one("#playback-title").render())
        await pilot.press("escape")
        assert isinstance(app.screen, SearchScreen)


async def test_nothing_recorded_is_said_in_one_line(recorded: RecordedSystem) -> None:
    from console.screens.playback import PlaybackRequest

    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE):
        await connected(app)
        long_ago = 1_000_000_000_000_000
        await app.push_screen(PlaybackScreen(PlaybackRequest("cam0", long_ago, long_ago + 10_000_000, "nothing")))
        screen = playback(app)
        await wait_until(lambda: screen.error is not None, 20, "the refusal")
        assert screen.error is not None and screen.error.startswith("cannot play cam0: ") and "\n" not in screen.error
        # The store's own reason for its /recordings sidecar's 404, not an export tried after it
        assert screen.error.startswith("cannot play cam0: camera cam0 has nothing recorded from "), screen.error
        assert screen.source is None


def refused(url: str, headers: dict[str, str] | None = None) -> str:
    """What the console says when the store refuses the footage listing at ``url`` (it does not export then)."""
    with pytest.raises(PlaybackError) as caught:
        fetch_sidecar(url, headers or {}, None)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_the_stores_refusals_of_the_footage_listing_are_its_own_reasons(recorded: RecordedSystem) -> None:
    now_us = time.time_ns() // 1000
    long_ago = 1_000_000_000_000_000
    store = recorded.store_url
    assert "cam0 has nothing recorded from" in refused(recordings_url(store, "cam0", long_ago, long_ago + 10**7,
                                                                      "json"))  # 404
    assert "'nope'" in refused(recordings_url(store, "nope", now_us - 10**7, now_us, "json"))  # 404
    assert "longer than 24 hours" in refused(recordings_url(store, "cam0", now_us - 25 * 3600 * 10**6, now_us,
                                                            "json"))  # 400
    assert "give from=TIME" in refused(f"{store}/recordings/cam0.json")  # 400


async def test_a_store_without_http_playback_is_played_from_an_export(recorded: RecordedSystem,
                                                                      tmp_path: Path) -> None:
    """A server without /recordings answers 404 'no endpoint ...' (the shared server shell's, and every store's
    before HTTP playback): the node's here, as the place the sidecar is asked for; the export comes from the store."""
    now_us = time.time_ns() // 1000
    from_us, to_us = now_us - 30_000_000, now_us
    assert fetch_sidecar(recordings_url(recorded.node_url, "cam0", from_us, to_us, "json"), {}, None) is None
    app = ConsoleApp(recorded.store_url, live_video=False)
    async with app.run_test(size=SIZE):
        await connected(app)
        source = await store_source(app.link, recorded.node_url, {}, None, "cam0", from_us, to_us, tmp_path)
        assert source.via == "export"
        assert (await asyncio.to_thread(Path(source.url).read_bytes))[4:8] == b"ftyp"  # an MP4 of the footage


async def test_a_store_with_authentication_plays_over_http_with_the_console_token(tmp_path: Path) -> None:
    """The console's viewer token goes to the store's /recordings in an Authorization header (FFmpeg's)."""
    from store.admin.keys import KeyStore
    from tests.system.conftest import Processes, free_port, wait_for_health

    root, logs = tmp_path / "store", tmp_path / "logs"
    logs.mkdir()
    keys = KeyStore(root)
    viewer, _ = keys.issue("viewer", "console-test", 600)
    node_token, _ = keys.issue("node", "node0", 600)
    processes, port, node_port = Processes(logs), free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1",
                                             "--port", str(port)))
        processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                        "--store", f"ws://127.0.0.1:{port}", "--spool", str(tmp_path / "spool"),
                        "--segment-seconds", "2", "--size", "160x120", "--fps", "5", "--camera", "cam0=synthetic",
                        token=node_token)
        app = ConsoleApp(url, token=viewer, live_video=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.link_status.state == "connected", 20, "the store link")
            await pilot.press("s")
            search = app.screen
            assert isinstance(search, SearchScreen)
            for _ in range(40):  # the node's first segments
                search.action_search()
                await pilot.pause(1.0)
                if len(search.results) >= 2:
                    break
            assert len(search.results) >= 2, "the node recorded nothing"
            await pilot.press("p")
            screen = playback(app)
            await wait_until(lambda: screen.picture is not None or screen.error is not None, 20, "a picture")
            assert screen.error is None and screen.source is not None and screen.source.via == "recordings"
            segment = search.results[0]
            sidecar = recordings_url(url, "cam0", segment.start_us, segment.end_us, "json")
            assert "no token" in await asyncio.to_thread(refused, sidecar)  # 401: said, not exported
            assert "a node token may not use" in await asyncio.to_thread(
                refused, sidecar, {"Authorization": f"Bearer {node_token}"})  # 403
            assert await asyncio.to_thread(fetch_sidecar, sidecar, app.live_headers, None) is not None
    finally:
        processes.stop_all()
