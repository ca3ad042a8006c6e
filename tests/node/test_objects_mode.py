"""The ``objects`` recording mode in RecordingModes (node/recording/modes.py) with a real spool: labels from the
store keep an event's footage, an event without one lets it go, and without the store it is motion mode."""

from __future__ import annotations

from node.recording.modes import RecordingModes
from node.recording.spool import Spool, SpooledSegment
from shared.protocol.health import RecordingHealth
from shared.protocol.ingest import EventRecord
from shared.settings import MOTION, OBJECTS_MODE
from tests.node.test_recording_modes import T0, Clock, FakeUploads, ten_second_segments

__all__ = ["ten_second_segments"]  # the module-scoped fixture, shared with test_recording_modes

S = 1_000_000


async def two_events(tmp_path, segments, mode: str, reachable: bool, label: bool
                     ) -> tuple[RecordingModes, FakeUploads, list[SpooledSegment]]:
    """0-30 s in three segments; an event at 2-4 s (labelled ``person`` while open, if ``label``) and one at
    22-23 s that never gets a label; decided at 40 s, when the second one's grace (to 33 s) is over."""
    spool, uploads, clock = Spool(tmp_path / "spool"), FakeUploads(), Clock(T0)
    modes = RecordingModes(["cam0"], spool, uploads, clock)
    modes.set_mode("cam0", mode)
    modes.store_reachable = lambda: reachable
    spooled = [spool.put(header, data) for header, data in segments]
    # Reported as they happen: the first event before 0-10 s is spooled, the second between 10-20 and 20-30.
    for step in [(2, 4), spooled[0], spooled[1], (22, 23), spooled[2]]:
        if isinstance(step, SpooledSegment):
            clock.now_us = step.header.end_us
            await modes.segment_spooled(step)
            continue
        start, end = step
        clock.now_us = T0 + start * S
        modes.motion_started("cam0", T0 + start * S)
        if label and start == 2:
            modes.event_label("cam0", T0 + start * S, "person")
        clock.now_us = T0 + (end + 2) * S  # the detector closes an event after its quiet period
        modes.motion_finished_soon(EventRecord("node0", "cam0", T0 + start * S, T0 + end * S, "motion", 0.8))
    clock.now_us = T0 + 40 * S
    await modes.finish()
    return modes, uploads, spooled


async def test_only_the_labelled_events_footage_is_kept(tmp_path, ten_second_segments):
    modes, uploads, spooled = await two_events(tmp_path, ten_second_segments, OBJECTS_MODE, reachable=True,
                                               label=True)
    kept = uploads.segments()
    assert [k.header.start_us for k in kept] == [T0, T0 + 10 * S]  # 0-10 whole, 10-20 trimmed to the post-roll
    assert kept[0].header == spooled[0].header
    assert kept[1].header.end_us < T0 + 17 * S  # 10-14 s wanted: its keyframe interval, not the second event's
    assert modes.health("cam0") == RecordingHealth(held=0, discarded_quiet=1,  # 20-30: the unlabelled event's
                                                   trimmed_bytes=modes.trimmed_bytes["cam0"])
    assert modes.labels_heard == {"cam0": 1}


async def test_without_a_label_nothing_is_kept(tmp_path, ten_second_segments):
    modes, uploads, _ = await two_events(tmp_path, ten_second_segments, OBJECTS_MODE, reachable=True, label=False)
    assert uploads.segments() == [] and modes.health("cam0").discarded_quiet == 3


async def test_with_the_store_out_of_reach_objects_mode_keeps_what_motion_mode_keeps(tmp_path, ten_second_segments):
    _, uploads, _ = await two_events(tmp_path / "objects", ten_second_segments, OBJECTS_MODE, reachable=False,
                                     label=False)
    _, motion, _ = await two_events(tmp_path / "motion", ten_second_segments, MOTION, reachable=True, label=False)
    assert [k.header.start_us for k in uploads.segments()] == [k.header.start_us for k in motion.segments()]
    assert len(uploads.segments()) == 3  # all three: both events' windows


async def test_a_label_for_a_camera_not_on_this_node_is_ignored(tmp_path):
    modes = RecordingModes(["cam0"], Spool(tmp_path / "spool"), FakeUploads(), Clock(T0))
    modes.event_label("cam9", T0, "person")
    assert modes.labels_heard == {"cam0": 0}
