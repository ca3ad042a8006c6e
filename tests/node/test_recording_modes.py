"""Recording modes (node/recording/modes.py) with a real spool and a fake uploader that records calls."""

from __future__ import annotations

import av
import pytest

from node.recording.modes import RecordingModes
from node.recording.segmenter import Segmenter, build_segment
from node.recording.spool import Spool, SpooledEvent, SpooledItem, SpooledSegment
from shared.protocol.health import RecordingHealth
from shared.protocol.ingest import EventRecord
from shared.settings import CONTINUOUS, MOTION
from tests.node.test_segmenter import FPS, H, W, encoded_units

S = 1_000_000
T0 = 1_700_000_000_000_000


class FakeUploads:
    def __init__(self) -> None:
        self.calls: list[tuple[str, SpooledItem]] = []

    def add(self, item: SpooledItem) -> None:
        self.calls.append(("add", item))

    async def add_and_enforce(self, item: SpooledSegment) -> None:
        self.calls.append(("add_and_enforce", item))

    def segments(self) -> list[SpooledSegment]:
        return [item for _, item in self.calls if isinstance(item, SpooledSegment)]


class Clock:
    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


@pytest.fixture(scope="module")
def ten_second_segments() -> list[tuple]:
    """Three 10 s segments of cam0 from T0 on, as (header, data)."""
    seg = Segmenter("cam0", 10, FPS)
    finished = [s for u in encoded_units(305, start_us=T0) if (s := seg.push(u)) is not None]
    return [build_segment("node0", s, W, H, FPS) for s in finished[:3]]


def setup(tmp_path, segments, mode: str) -> tuple[RecordingModes, Spool, FakeUploads, Clock, list[SpooledSegment]]:
    spool, uploads, clock = Spool(tmp_path / "spool"), FakeUploads(), Clock(T0)
    modes = RecordingModes(["cam0"], spool, uploads, clock)
    modes.set_mode("cam0", mode)
    return modes, spool, uploads, clock, [spool.put(header, data) for header, data in segments]


async def test_continuous_mode_hands_every_segment_over_at_once(tmp_path, ten_second_segments):
    modes, spool, uploads, _, spooled = setup(tmp_path, ten_second_segments, CONTINUOUS)
    for item in spooled:
        await modes.segment_spooled(item)
    assert uploads.calls == [("add_and_enforce", item) for item in spooled]
    assert modes.health("cam0") == RecordingHealth(held=0, discarded_quiet=0, trimmed_bytes=0, kept_without_verdict=0)
    assert len(spool.scan()) == 3


async def test_motion_mode_drops_quiet_segments_and_trims_the_one_an_event_wants(tmp_path, ten_second_segments):
    modes, spool, uploads, clock, spooled = setup(tmp_path, ten_second_segments, MOTION)
    for item in spooled:
        clock.now_us = item.header.end_us
        await modes.segment_spooled(item)
    assert uploads.calls == [] and modes.health("cam0").held >= 1
    modes.motion_started("cam0", T0 + 27 * S)  # pre-roll from 22 s: only the third segment, from 22 s on
    record = EventRecord("node0", "cam0", T0 + 27 * S, T0 + 28 * S, "motion", 0.8, thumb_us=None)
    modes.motion_finished_soon(record)
    clock.now_us = T0 + 40 * S
    await modes.finish()  # waits for the event to be spooled
    events = [item for call, item in uploads.calls if call == "add" and isinstance(item, SpooledEvent)]
    assert [e.record for e in events] == [record]
    [kept] = uploads.segments()
    whole = spooled[2].header
    assert kept.header.start_us == T0 + 22 * S and kept.header.end_us == whole.end_us  # from the keyframe at 22 s
    with av.open(str(kept.media_path)) as container:
        assert len(list(container.decode(video=0))) == kept.header.frames == 80
    health = modes.health("cam0")
    assert health == RecordingHealth(held=0, discarded_quiet=2, trimmed_bytes=whole.bytes - kept.header.bytes,
                                     kept_without_verdict=0)
    assert health.trimmed_bytes > 0
    left = spool.scan()  # the quiet ones and the untrimmed original are gone; the trimmed one and the event wait
    assert {i.header.segment_id for i in left if isinstance(i, SpooledSegment)} == {kept.header.segment_id}
    assert kept.media_path.name.endswith(".trim.mp4")


async def test_quiet_segments_wait_until_no_event_can_want_them(tmp_path, ten_second_segments):
    modes, _, uploads, clock, spooled = setup(tmp_path, ten_second_segments[:1], MOTION)
    clock.now_us = spooled[0].header.end_us
    await modes.segment_spooled(spooled[0])
    assert modes.health("cam0").held == 1  # an event reported late may still want its pre-roll
    clock.now_us = spooled[0].header.end_us + 7 * S  # detection delay + pre-roll later: nothing can
    await modes.decide("cam0")
    assert modes.health("cam0") == RecordingHealth(held=0, discarded_quiet=1, trimmed_bytes=0, kept_without_verdict=0)
    assert uploads.calls == [] and not spooled[0].media_path.exists()


async def test_switching_to_continuous_releases_what_is_held_whole(tmp_path, ten_second_segments):
    modes, _, uploads, clock, spooled = setup(tmp_path, ten_second_segments[:2], MOTION)
    for item in spooled:
        clock.now_us = item.header.end_us
        await modes.segment_spooled(item)
    held = modes.health("cam0").held
    assert held >= 1
    modes.set_mode("cam0", CONTINUOUS)
    await modes.decide("cam0")
    assert len(uploads.segments()) == held and all(i.media_path.exists() for i in uploads.segments())
    assert modes.health("cam0").held == 0


async def test_a_segment_that_cannot_be_trimmed_is_kept_whole(tmp_path, ten_second_segments):
    modes, _, uploads, clock, spooled = setup(tmp_path, ten_second_segments[2:], MOTION)
    spooled[0].media_path.write_bytes(b"not an mp4")  # trimming fails: keep all of it rather than lose any
    modes.motion_started("cam0", T0 + 27 * S)
    clock.now_us = spooled[0].header.end_us
    await modes.segment_spooled(spooled[0])
    assert uploads.segments() == [spooled[0]]
    assert modes.health("cam0").trimmed_bytes == 0


async def test_the_gate_judges_a_camera_by_its_own_clock_not_the_wall_clock(tmp_path, ten_second_segments):
    # The camera's stamps run an hour behind the wall clock (a forward step held back for a passed-through
    # stream's keyframe): by the wall clock every held segment is long past any pre-roll and would be dropped,
    # though an event starting now, in the camera's time, wants the last one.
    spool, uploads = Spool(tmp_path / "spool"), FakeUploads()
    spooled = [spool.put(header, data) for header, data in ten_second_segments]
    camera_now = Clock(spooled[-1].header.end_us)
    modes = RecordingModes(["cam0"], spool, uploads, Clock(camera_now.now_us + 3600 * S), {"cam0": camera_now})
    modes.set_mode("cam0", MOTION)
    for item in spooled:
        await modes.segment_spooled(item)
    assert modes.health("cam0").held >= 1
    modes.motion_started("cam0", camera_now.now_us + S)
    camera_now.now_us += 20 * S
    await modes.decide("cam0")
    assert [i.header.start_us for i in uploads.segments()] == [T0 + 26 * S]  # its pre-roll, trimmed


async def test_a_segment_the_post_roll_reaches_into_by_microseconds_is_uploaded_from_its_first_frame(
        tmp_path, ten_second_segments):
    # The post-roll ends 13 µs after the second segment began: its first frame (captured then) is wanted, and
    # reaches the uploader as a segment of its own.
    modes, _, uploads, clock, spooled = setup(tmp_path, ten_second_segments, MOTION)
    modes.gates["cam0"].post_roll_us = 4 * S
    modes.motion_started("cam0", T0 + 2 * S)
    modes.motion_finished_soon(EventRecord("node0", "cam0", T0 + 2 * S, T0 + 6 * S + 13, "motion", 0.8,
                                           thumb_us=None))
    for item in spooled:
        clock.now_us = item.header.end_us
        await modes.segment_spooled(item)
    clock.now_us = T0 + 40 * S
    await modes.finish()
    first, second = uploads.segments()
    assert first == spooled[0]
    assert (second.header.start_us, second.header.end_us) == (T0 + 10 * S, T0 + 10 * S + 100_000)
    assert second.header.frames == 1 and second.media_path.name.endswith(".trim.mp4")
    assert modes.health("cam0").discarded_quiet == 1
