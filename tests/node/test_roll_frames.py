"""The motion-mode gate (node/recording/roll.py) against single frames: a camera's frames, stamped with jitter and
now and then a dropped slot, cut into segments by the real Segmenter; events reported late, as the motion worker
does; motion (or objects, every event labelled) mode switched on at any moment. Every frame captured within an
event's rolled window, in a segment the gate decided on, must be in a kept segment and within the keyframe
intervals kept of it (node/recording/trim.py ``frames_to_keep``): never a frame lost at an edge."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from node.recording.roll import RecordingGate
from node.recording.segmenter import FinishedSegment, Segmenter
from node.recording.trim import frames_to_keep
from shared.fanout import AccessUnit

S = 1_000_000
FRAME = 100_000  # 10 fps
GOP = 10
T0 = 1_796_533_567_110_233


@dataclass
class Recording:
    frames: list[int]  # capture times, in order
    keyframes: list[bool]
    events: list[tuple[int, int, int, int]]  # (start_us, end_us, reported start, reported end)
    segment_seconds: int
    pre_roll_us: int
    post_roll_us: int
    switch_us: int  # motion mode from here on
    spool_delay_us: int  # from a segment's end to its hand-off
    objects: bool


@st.composite
def recordings(draw: st.DrawFn) -> Recording:
    slots = draw(st.integers(30, 150))
    jitter = draw(st.lists(st.integers(0, 3_000), min_size=slots, max_size=slots))
    dropped = draw(st.sets(st.integers(1, slots - 1), max_size=4))
    frames = [T0 + i * FRAME + jitter[i] for i in range(slots) if i not in dropped]
    keyframes = [i % GOP == 0 for i in range(len(frames))]
    # Events by frame: a start, a last moving frame, then quiet for 2 s before the next can start.
    events = []
    first = draw(st.integers(0, 30))
    for _ in range(draw(st.integers(0, 3))):
        length = draw(st.integers(2, 30))
        last = first + length
        if last >= len(frames) - 25:  # each event is reported closed before the recording stops
            break
        frame_us = FRAME + draw(st.integers(-20, 20))  # the tracker's median frame interval
        start_us, end_us = frames[first], frames[last] + frame_us
        events.append((start_us, end_us, start_us + draw(st.integers(200_000, 1_500_000)),
                       frames[last] + 2 * S + draw(st.integers(0, 300_000))))
        first = last + 21 + draw(st.integers(0, 30))
    # Rolls of whole frames give or take a few µs: windows that end within microseconds of a frame.
    pre_roll = draw(st.integers(1, 30)) * FRAME + draw(st.integers(-30, 30))
    post_roll = draw(st.integers(1, 40)) * FRAME + draw(st.integers(-30, 30))
    if events and draw(st.booleans()):  # motion mode from just after an event's post-roll ended
        _, end_us, _, reported = draw(st.sampled_from(events))
        switch = max(end_us + post_roll, reported) + draw(st.integers(0, 2 * S))
    else:
        switch = frames[0] + draw(st.integers(0, (slots - 1) * FRAME))
    return Recording(frames, keyframes, events, draw(st.integers(1, 3)), pre_roll, post_roll, switch,
                     draw(st.integers(0, 800_000)), draw(st.booleans()))


def replay(r: Recording) -> tuple[list[tuple[FinishedSegment, tuple[int, int]]], list[FinishedSegment]]:
    """The gate's (keep, discard) of the segments handed to it (those spooled once motion mode was on), as
    node/recording/modes.py drives it: events as reported, a decision at each hand-off, each reported end and
    each second, and at the stop."""
    gate: RecordingGate[FinishedSegment] = RecordingGate(pre_roll_us=r.pre_roll_us, post_roll_us=r.post_roll_us,
                                                         detection_delay_us=2 * S, require_label=r.objects)
    segmenter = Segmenter("cam0", r.segment_seconds, 10)
    actions: list[tuple[int, int, object]] = []  # (time, order at that time, what)
    for t, keyframe in zip(r.frames, r.keyframes, strict=True):
        finished = segmenter.push(AccessUnit.build(t, keyframe, b"\x00"))
        if finished is not None:
            actions.append((t + r.spool_delay_us, 0, finished))
    stop_us = r.frames[-1] + FRAME
    last = segmenter.flush()
    assert last is not None
    for start_us, end_us, started, ended in r.events:
        actions += [(started, 1, ("started", start_us)), (ended, 1, ("finished", start_us, end_us))]
    actions += [(t, 2, "tick") for t in range(r.switch_us, stop_us, S)]
    keep: list[tuple[FinishedSegment, tuple[int, int]]] = []
    discard: list[FinishedSegment] = []
    for now, _, what in sorted(actions, key=lambda a: (a[0], a[1])):
        motion = now >= r.switch_us
        if isinstance(what, FinishedSegment):
            if not motion:
                continue  # continuous mode: uploaded whole
            gate.hold(what.start_us, what.end_us, what)
        elif what != "tick":
            assert isinstance(what, tuple)
            if what[0] == "started":
                gate.event_started(what[1])
                if r.objects:
                    assert gate.event_labelled(what[1], "person")
            else:
                gate.event_finished(what[1], what[2])
        if motion:
            k, d = gate.decide_spans(now)
            keep += k
            discard += d
    if stop_us + r.spool_delay_us >= r.switch_us:
        gate.hold(last.start_us, last.end_us, last)
    k, d = gate.finish_spans(stop_us + r.spool_delay_us)
    return keep + k, discard + d


@settings(max_examples=300, deadline=None)
@given(recordings())
def test_every_frame_within_an_events_window_is_kept(r: Recording) -> None:
    keep, discard = replay(r)
    windows = [(start - r.pre_roll_us, end + r.post_roll_us) for start, end, _, _ in r.events]
    decided = {id(s) for s, _ in keep} | {id(s) for s in discard}
    assert len(decided) == len(keep) + len(discard), "a segment decided twice"
    for segment in discard:
        lost = [u.capture_us for u in segment.units if any(lo <= u.capture_us < hi for lo, hi in windows)]
        assert not lost, f"frames at {lost} within an event's window were discarded"
    for segment, (lo, hi) in keep:
        times = [u.capture_us for u in segment.units]
        kept = frames_to_keep(times, [u.keyframe for u in segment.units], lo, hi)
        first, last = kept if kept is not None else (len(times), -1)
        lost = [t for i, t in enumerate(times) if any(a <= t < b for a, b in windows) and not first <= i <= last]
        assert not lost, f"frames at {lost} within an event's window were trimmed off"
