"""Object detection in the console (issue 15): the store's detector on the Fleet screen, labels, the label filter
and snapshots on the Events screen. Driven by keys (Pilot) against the canned store (tests/console/canned.py)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from textual.widgets import RichLog

from console.alerts import AlertTracker
from console.app import ConsoleApp
from console.fleet_model import FleetSnapshot
from console.link import FleetUpdated
from console.screens.fleet import FleetScreen
from console.widgets.detector_line import DetectorLine, detector_text
from shared.protocol.detector_health import DetectorHealth
from shared.protocol.fleet import FleetReport
from tests.console.canned import DETECTOR, FLEET, NOW_US, SECOND, CannedStore
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


def canned_app(fleet: dict[str, Any]) -> ConsoleApp:
    return ConsoleApp("http://127.0.0.1:8100", link=CannedStore(fleet), live_video=False, clock=lambda: NOW_US)


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
