"""The ``objects`` recording mode in RecordingModes (node/recording/modes.py) with a real spool: the store's verdict
decides (a label keeps an event's footage, "none found" lets it go), silence keeps it as motion mode does (counted),
and without the store it is motion mode."""

from __future__ import annotations

import logging

from node.recording.modes import RecordingModes
from node.recording.roll import DEFAULT_LABEL_GRACE_S
from node.recording.spool import Spool, SpooledSegment
from shared.protocol.health import RecordingHealth
from shared.protocol.ingest import EventRecord
from shared.settings import MOTION, OBJECTS_MODE
from tests.node.test_recording_modes import T0, Clock, FakeUploads, ten_second_segments

__all__ = ["ten_second_segments"]  # the module-scoped fixture, shared with test_recording_modes

S = 1_000_000
NO_VERDICT = "no verdict"


async def two_events(tmp_path, segments, mode: str, reachable: bool, first: str | None = NO_VERDICT,
                     second: str | None = NO_VERDICT, stop_at_s: int = 60
                     ) -> tuple[RecordingModes, FakeUploads, list[SpooledSegment]]:
    """0-30 s in three segments; an event at 2-4 s and one at 22-23 s, each with the verdict given (a label while
    it is open, None once it has closed, or none at all); decided at ``stop_at_s`` (by default after the second
    one's grace is over), then a clean stop."""
    spool, uploads, clock = Spool(tmp_path / "spool"), FakeUploads(), Clock(T0)
    modes = RecordingModes(["cam0"], spool, uploads, clock)
    modes.set_mode("cam0", mode)
    modes.store_reachable = lambda: reachable
    spooled = [spool.put(header, data) for header, data in segments]
    # Reported as they happen: the first event before 0-10 s is spooled, the second between 10-20 and 20-30.
    steps: list[SpooledSegment | tuple[int, int, str | None]] = [(2, 4, first), spooled[0], spooled[1],
                                                                  (22, 23, second), spooled[2]]
    for step in steps:
        if isinstance(step, SpooledSegment):
            clock.now_us = step.header.end_us
            await modes.segment_spooled(step)
            continue
        start, end, verdict = step
        clock.now_us = T0 + start * S
        modes.motion_started("cam0", T0 + start * S)
        if isinstance(verdict, str) and verdict != NO_VERDICT:
            modes.event_label("cam0", T0 + start * S, verdict)
        clock.now_us = T0 + (end + 2) * S  # the detector closes an event after its quiet period
        modes.motion_finished_soon(EventRecord("node0", "cam0", T0 + start * S, T0 + end * S, "motion", 0.8))
        if verdict is None:
            modes.event_label("cam0", T0 + start * S, None)  # the store's verdict, 1-2 s after the close
    clock.now_us = T0 + stop_at_s * S
    await modes.decide("cam0")
    await modes.finish()
    return modes, uploads, spooled


def starts(uploads: FakeUploads) -> list[int]:
    return [k.header.start_us for k in uploads.segments()]


async def test_only_the_footage_of_events_not_found_empty_is_kept(tmp_path, ten_second_segments):
    modes, uploads, spooled = await two_events(tmp_path, ten_second_segments, OBJECTS_MODE, reachable=True,
                                               first="person", second=None)
    kept = uploads.segments()
    assert [k.header.start_us for k in kept] == [T0, T0 + 10 * S]  # 0-10 whole, 10-20 trimmed to the post-roll
    assert kept[0].header == spooled[0].header
    assert kept[1].header.end_us < T0 + 17 * S  # 10-14 s wanted: its keyframe interval, not the second event's
    assert modes.health("cam0") == RecordingHealth(held=0, discarded_quiet=1,  # 20-30: the event found empty
                                                   trimmed_bytes=modes.trimmed_bytes["cam0"], kept_without_verdict=0)
    assert modes.verdicts_heard == {"cam0": 2}


async def test_events_found_empty_keep_nothing(tmp_path, ten_second_segments):
    modes, uploads, _ = await two_events(tmp_path, ten_second_segments, OBJECTS_MODE, reachable=True,
                                         first=None, second=None)
    assert uploads.segments() == [] and modes.health("cam0").discarded_quiet == 3


async def test_without_verdicts_objects_mode_keeps_what_motion_mode_keeps_and_counts_the_events(
        tmp_path, ten_second_segments, caplog):
    assert DEFAULT_LABEL_GRACE_S * S <= (60 - 23) * S  # decided at 60 s: the second event's grace is over
    with caplog.at_level(logging.DEBUG, logger="node.recording.modes"):
        modes, uploads, _ = await two_events(tmp_path / "objects", ten_second_segments, OBJECTS_MODE,
                                             reachable=True)
    _, motion, _ = await two_events(tmp_path / "motion", ten_second_segments, MOTION, reachable=True)
    assert starts(uploads) == starts(motion) and len(starts(uploads)) == 3  # all three: both events' windows
    assert modes.health("cam0").kept_without_verdict == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "no verdict" in r.getMessage()]
    assert len(warnings) == 1 and "recording.kept_without_verdict" in warnings[0].getMessage()  # once a camera


async def test_at_a_stop_within_the_grace_footage_waiting_for_its_verdict_is_kept_uncounted(
        tmp_path, ten_second_segments):
    modes, uploads, _ = await two_events(tmp_path, ten_second_segments, OBJECTS_MODE, reachable=True,
                                         first=None, stop_at_s=40)  # the second event's grace runs to 53 s
    assert starts(uploads) == [T0 + 17 * S, T0 + 20 * S]  # 10-20 trimmed to its pre-roll (17 s), and 20-30
    assert modes.health("cam0").kept_without_verdict == 0


async def test_with_the_store_out_of_reach_objects_mode_keeps_what_motion_mode_keeps(tmp_path, ten_second_segments):
    _, uploads, _ = await two_events(tmp_path / "objects", ten_second_segments, OBJECTS_MODE, reachable=False,
                                     stop_at_s=40)
    _, motion, _ = await two_events(tmp_path / "motion", ten_second_segments, MOTION, reachable=True, stop_at_s=40)
    assert starts(uploads) == starts(motion) and len(starts(uploads)) == 3


async def test_a_verdict_for_a_camera_not_on_this_node_is_ignored(tmp_path):
    modes = RecordingModes(["cam0"], Spool(tmp_path / "spool"), FakeUploads(), Clock(T0))
    modes.event_label("cam9", T0, "person")
    modes.event_label("cam9", T0, None)
    assert modes.verdicts_heard == {"cam0": 0}
