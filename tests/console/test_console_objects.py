"""Object detection in the console (issue 15): the store's detector on the Fleet screen, labels, the label filter
and snapshots on the Events screen. Driven by keys (Pilot) against the canned store (tests/console/canned.py)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from textual.widgets import DataTable, RichLog, Select, Static

import console.screens.events
from console.alerts import AlertTracker
from console.app import ConsoleApp
from console.event_view import detail_text, known_labels, label_cell, length_cell, next_label
from console.fleet_model import FleetSnapshot
from console.link import FleetUpdated
from console.screens.events import EventsScreen
from console.screens.fleet import FleetScreen
from console.screens.search import SearchScreen
from console.widgets.detector_line import DetectorLine, detector_text
from shared.protocol.detector_health import DetectorHealth
from shared.protocol.errors import read_message
from shared.protocol.fleet import FleetReport
from shared.protocol.results import Event
from shared.query_client import StoreError
from tests.console.canned import DETECTOR, EVENTS, FLEET, NOW_US, SECOND, CannedStore
from tests.console.conftest import wait_until
from tests.console.test_console_snapshots import SIZE

pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")  # in textual-image

RUNNING = DetectorHealth.from_json(DETECTOR)
FAILED = dataclasses.replace(RUNNING, state="failed", errors=3, restarts=2,
                             last_error="detector process exited with code -9; restarting in 2 s")


def fleet_with(detector: dict[str, Any] | None, now_us: int = NOW_US) -> dict[str, Any]:
    data = copy.deepcopy(FLEET)
    data["now_us"] = now_us
    data["detector"] = detector
    return data


def canned_app(fleet: dict[str, Any] | None = None, store: CannedStore | None = None) -> ConsoleApp:
    return ConsoleApp("http://127.0.0.1:8100", link=store or CannedStore(fleet), live_video=False,
                      clock=lambda: NOW_US)


def test_detector_line_says_where_on_what_how_fast_and_what_it_dropped() -> None:
    assert detector_text(RUNNING).plain == "detector local · running · cpu · 8.9 ms (p99 14) · queue 1/8 · 3 dropped"
    assert len(detector_text(RUNNING).plain) <= 78  # one line at 80 columns
    workers = dataclasses.replace(RUNNING, mode="workers", workers=2, device="cuda", inference_ms_p99=None,
                                  provider="TensorrtExecutionProvider", queue_limit=None)
    assert detector_text(workers).plain == "detector 2 workers · running · cuda (Tensorrt) · 8.9 ms · queue 1 · " \
                                           "3 dropped"
    assert detector_text(FAILED).plain.splitlines() == [
        "detector local · failed · cpu · 8.9 ms (p99 14) · queue 1/8 · 3 dropped",
        "3 errors · 2 restarts · last error: detector process exited with code -9; restarting in 2 s"]
    assert detector_text(dataclasses.replace(RUNNING, last_error="timed out")).plain.splitlines()[1] == \
        "last error: timed out"
    assert detector_text(DetectorHealth(mode="off", state="off")).plain == \
        "detector off · events keep their motion meaning"
    assert detector_text(DetectorHealth()).plain == "detector ? · ?"  # every field missing: nothing invented


def test_detector_alerts_on_failure_restart_and_recovery() -> None:
    tracker = AlertTracker()

    def alerts(detector: DetectorHealth | None) -> list[tuple[str, str]]:
        snap = FleetSnapshot.from_api(FleetReport.from_json(fleet_with(None)))
        return [(a.level, a.text) for a in tracker.update(dataclasses.replace(snap, detector=detector))
                if a.subject == "detector"]

    assert alerts(RUNNING) == []
    assert alerts(dataclasses.replace(RUNNING, restarts=1, last_error="no answer in 10 s")) == [
        ("warning", "object detector restarted (1 since the store started): no answer in 10 s")]
    assert alerts(FAILED) == [("error", "object detector failed: detector process exited with code -9; "
                                        "restarting in 2 s")]
    assert alerts(FAILED) == []  # said once
    assert alerts(None) == []  # a poll without the detector changes nothing
    assert alerts(dataclasses.replace(RUNNING, restarts=2)) == [("info", "object detector running")]


async def test_fleet_screen_shows_the_detector_and_turns_red_when_it_fails() -> None:
    app = canned_app(fleet_with(DETECTOR))
    async with app.run_test(size=SIZE):
        await wait_until(lambda: app.fleet is not None, what="the canned fleet")
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        line = screen.query_one(DetectorLine)
        await wait_until(lambda: "running" in str(line.render()), what="the detector line")
        assert line.display and not line.has_class("-troubled")

        failed = fleet_with(FAILED.to_json(), NOW_US + 2 * SECOND)
        app.post_message(FleetUpdated(FleetReport.from_json(failed)))
        await wait_until(lambda: "failed" in str(line.render()), what="the detector to show as failed")
        assert line.has_class("-troubled") and "last error: detector process exited" in str(line.render())
        log = screen.query_one("#alert-log", RichLog)
        assert any("object detector failed" in strip.text for strip in log.lines)


async def test_a_store_that_reports_no_detector_shows_no_detector_line() -> None:
    app = canned_app(fleet_with(None))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.fleet is not None, what="the canned fleet")
        await pilot.pause()
        assert not app.screen.query_one(DetectorLine).display


def event(**changes: Any) -> Event:
    return dataclasses.replace(read_message(EVENTS[0], "event", Event.read), **changes)


def test_an_event_says_what_was_seen_in_it() -> None:
    labelled = event()
    assert label_cell(labelled) == "person 0.86" and length_cell(labelled) == "12s"
    assert detail_text(labelled).splitlines()[3:6] == ["person 0.86", "seen: car, person ×2",
                                                       "object x0.33 y0.33 w0.17 h0.34"]
    assert "seen" not in detail_text(event(labels={"person": 1}))  # nothing more to say than the label
    assert label_cell(event(label_score=None)) == "person"
    nothing = event(label=None, label_score=None, label_box=None, labels={}, snapshot=False)
    assert label_cell(nothing) == "" and "no object recognised" in detail_text(nothing)
    older_store = event(label=None, label_score=None, label_box=None, labels=None, snapshot=False)
    assert detail_text(older_store).splitlines()[3:] == ["motion x0.10 y0.20 w0.30 h0.40"]
    ongoing = event(open=True, label=None, label_score=None, label_box=None, labels=None)
    assert length_cell(ongoing) == "ongoing" and "so far, ongoing" in detail_text(ongoing)
    assert "not analysed yet" in detail_text(ongoing)


def test_the_label_filter_steps_through_the_labels_then_all() -> None:
    labels = known_labels([event(), event(label=None, labels={})], [{"objects": ["person", "bicycle"]}, {}])
    assert labels == {"person", "car", "bicycle"}
    steps: list[str | None] = [None]
    for _ in range(4):
        steps.append(next_label(steps[-1], labels))
    assert steps == [None, "bicycle", "car", "person", None]
    assert next_label(None, ()) is None and next_label("dog", {"cat"}) == "cat"  # a label gone: start again


def table_rows(app: ConsoleApp) -> list[list[str]]:
    table = app.screen.query_one("#events-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def event_text(app: ConsoleApp) -> str:
    return str(app.screen.query_one("#event-text", Static).render())


async def open_events(app: ConsoleApp, pilot: Any) -> EventsScreen:
    await wait_until(lambda: app.fleet is not None, what="the canned fleet")
    await pilot.press("e")
    screen = app.screen
    assert isinstance(screen, EventsScreen)
    await wait_until(lambda: len(screen.events) > 0, what="the events")
    return screen


async def test_events_show_labels_ongoing_and_the_snapshot_with_its_box() -> None:
    store = CannedStore()
    app = canned_app(store=store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(app, pilot)
        assert [r[1:6] for r in table_rows(app)] == [["cam0", "person 0.86", "12s", "motion", "0.91"],
                                                     ["cam1", "", "5s", "motion", "0.42"],
                                                     ["cam0", "", "ongoing", "motion", "0.55"]]
        await wait_until(lambda: "snapshot at" in event_text(app), what="the first event's snapshot")
        assert ("snapshot", {"event": 7}) in store.calls and not any(m == "thumbnail" for m, _ in store.calls)
        assert screen.query_one("#event-thumb").image is not None  # type: ignore[attr-defined]

        await pilot.press("down")  # cam1: analysed, nothing recognised, no snapshot: its thumbnail instead
        await wait_until(lambda: "thumbnail at" in event_text(app), what="the second event's thumbnail")
        assert "no object recognised" in event_text(app)
        assert [m for m, _ in store.calls].count("snapshot") == 1


async def test_o_filters_events_by_label_in_the_store() -> None:
    store = CannedStore()
    app = canned_app(store=store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(app, pilot)

        def asked() -> list[list[str] | None]:
            return [p.get("labels") for m, p in store.calls if m == "events"]

        steps = []
        for _ in range(3):
            before = len(asked())
            await pilot.press("o")
            await wait_until(lambda n=before: len(asked()) > n and not screen._loading,  # type: ignore[misc]
                             what="the filtered events")
            await pilot.pause()
            title = screen.query_one("#events-table", DataTable).border_title
            steps.append((asked()[-1], [e.id for e in screen.events], title))
        # Labels from the events (person, car) and from the cameras' objects settings (cam1: person, car).
        assert steps == [(["car"], [7], " label: car "), (["person"], [7], " label: person "), (None, [7, 9, 11], None)]
        await pilot.press("o")
        await wait_until(lambda: screen.label == "car" and "1 car events" in str(
            screen.query_one("#events-note", Static).render()), what="the note to name the filter")


async def test_o_without_any_label_known_says_how_to_get_one() -> None:
    fleet = copy.deepcopy(FLEET)
    for camera in fleet["cameras"].values():
        camera["settings"].pop("objects", None)
    unlabelled = [{**e, "label": None, "label_score": None, "label_box": None, "labels": None, "snapshot": False}
                  for e in EVENTS]
    app = canned_app(store=CannedStore(fleet, unlabelled))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(app, pilot)
        await pilot.press("o")
        await wait_until(lambda: any("no labels to filter by yet" in str(n.message) for n in app._notifications),
                         what="the notice")
        assert screen.label is None


async def test_an_open_event_reloads_until_it_closes_and_keeps_the_selection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.screens.events, "OPEN_RELOAD_S", 0.3)
    events = copy.deepcopy(EVENTS)
    store = CannedStore(events=events)
    app = canned_app(store=store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_events(app, pilot)
        await pilot.press("down", "down")  # the open one
        await wait_until(lambda: "not analysed yet" in event_text(app), what="the open event's details")
        await wait_until(lambda: "thumbnail at" in event_text(app), what="its thumbnail")
        timelines = sum(m == "timeline" for m, _ in store.calls)
        # The store labels it, then the event ends.
        events[2].update(label="person", label_score=0.91, label_box=[0.4, 0.3, 0.1, 0.3], labels={"person": 1},
                         snapshot=True)
        await wait_until(lambda: table_rows(app)[2][2] == "person 0.91", what="the label to show up")
        assert screen.query_one("#events-table", DataTable).cursor_row == 2
        await wait_until(lambda: ("snapshot", {"event": 11}) in store.calls, what="its new snapshot")
        events[2].update(open=False, end_us=int(events[2]["end_us"]) + SECOND)  # type: ignore[call-overload]
        await wait_until(lambda: table_rows(app)[2][3] == "19s", what="the event to close")
        loads = sum(m == "events" for m, _ in store.calls)
        await pilot.pause(1.0)
        assert sum(m == "events" for m, _ in store.calls) == loads  # nothing open: no more reloading
        assert sum(m == "timeline" for m, _ in store.calls) == timelines  # those reloads asked for events only
        assert len(screen.query(".timeline-row")) == 3


class GoneSnapshots(CannedStore):
    async def call(self, method: str, **params: Any) -> Any:
        if method == "snapshot":
            self.calls.append((method, params))
            raise StoreError("not-found", f"event {params['event']} has no snapshot: it was deleted")
        return await super().call(method, **params)


async def test_a_snapshot_gone_from_the_store_falls_back_to_the_thumbnail() -> None:
    store = GoneSnapshots()
    app = canned_app(store=store)
    async with app.run_test(size=SIZE) as pilot:
        await open_events(app, pilot)
        await wait_until(lambda: "thumbnail at" in event_text(app), what="the thumbnail instead")
        assert [m for m, _ in store.calls if m in ("snapshot", "thumbnail")] == ["snapshot", "thumbnail"]


async def test_search_lists_events_with_their_label_and_previews_the_snapshot() -> None:
    store = CannedStore()
    app = canned_app(store=store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.fleet is not None, what="the canned fleet")
        await pilot.press("s")
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        screen.query_one("#kind", Select).value = "events"
        screen.action_search()
        await wait_until(lambda: len(screen.results) == 3, what="the events")
        rows = [[str(c) for c in screen.query_one("#results", DataTable).get_row_at(i)] for i in range(3)]
        assert [r[1:4] for r in rows] == [["cam0", "person 0.86", "12s"], ["cam1", "", "5s"],
                                          ["cam0", "", "ongoing"]]
        text = screen.query_one("#search-text", Static)
        await wait_until(lambda: "snapshot at" in str(text.render()), what="the snapshot preview")
        assert "person 0.86" in str(text.render()) and ("snapshot", {"event": 7}) in store.calls
