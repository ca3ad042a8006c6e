"""The camera time base (node/capture/timebase.py): monotonic stamps that follow the wall clock within bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.capture.timebase import MAX_SLEW, STEP_US, TimeBase
from shared.protocol.health import ClockHealth

S = 1_000_000
START = 1_764_165_166_000_000  # 2025-11-26T13:52:46Z
FRAME = 66_667


class FakeClocks:
    """A monotonic clock that advances by hand and a wall clock that can also be stepped."""

    def __init__(self, wall: int = START) -> None:
        self.mono, self.shift, self.wall0 = 10 * S, 0, wall

    def wall_us(self) -> int:
        return self.wall0 + self.mono + self.shift

    def mono_us(self) -> int:
        return self.mono

    def timebase(self, **kwargs: int) -> TimeBase:
        return TimeBase(self.wall_us, self.mono_us, **kwargs)


def run(clocks: FakeClocks, tb: TimeBase, frames: int, step_us: int = FRAME) -> list[int]:
    out = []
    for _ in range(frames):
        clocks.mono += step_us
        out.append(tb.stamp())
    return out


def test_stamps_follow_a_steady_wall_clock_exactly():
    clocks = FakeClocks()
    tb = clocks.timebase()
    stamps = run(clocks, tb, 100)
    assert stamps[-1] == clocks.wall_us()
    assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {FRAME}
    assert tb.health() == ClockHealth(offset_us=0, steps_forward=0, steps_back=0)


def test_a_forward_step_is_followed_at_once_and_flagged():
    clocks = FakeClocks()
    tb = clocks.timebase()
    before = run(clocks, tb, 10)
    clocks.shift += 3600 * S
    clocks.mono += FRAME
    after = tb.stamp()
    assert tb.stepped and after - before[-1] == 3600 * S + FRAME
    run(clocks, tb, 3)
    assert not tb.stepped and tb.health().steps_forward == 1 and tb.health().offset_us == 0


def test_a_backward_step_never_goes_back_and_is_slewed_away_at_the_bound():
    clocks = FakeClocks()
    tb = clocks.timebase()
    before = run(clocks, tb, 10)
    clocks.shift -= 30 * S
    after = run(clocks, tb, 10)
    assert after[0] > before[-1]
    spacing = {b - a for a, b in zip(after, after[1:], strict=False)}
    assert spacing == {FRAME - int(FRAME * MAX_SLEW)}  # 1% slow, not a jump
    health = tb.health()
    assert health.steps_back == 1 and 29 * S < health.offset_us <= 30 * S
    # 30 s at 1%: converged after 3000 s of stamps, and then on the wall clock again.
    run(clocks, tb, 3001, step_us=S)
    assert tb.health().offset_us == 0 and run(clocks, tb, 1)[0] == clocks.wall_us()


def test_a_small_disagreement_is_slewed_not_stepped():
    clocks = FakeClocks()
    tb = clocks.timebase()
    run(clocks, tb, 2)
    clocks.shift += STEP_US // 2
    stamps = run(clocks, tb, 5)
    assert not tb.health().steps_forward
    assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {FRAME + int(FRAME * MAX_SLEW)}


def test_a_held_step_waits_for_a_frame_that_may_start_a_segment():
    clocks = FakeClocks()
    tb = clocks.timebase()
    run(clocks, tb, 2)
    clocks.shift += 10 * S
    clocks.mono += FRAME
    held = tb.stamp(may_step=False)
    assert not tb.stepped and held - clocks.wall_us() < -9 * S
    clocks.mono += FRAME
    assert tb.stamp(may_step=True) == clocks.wall_us() and tb.stepped


def test_the_floor_from_an_earlier_run_is_never_stamped_behind():
    clocks = FakeClocks()
    floor = clocks.wall_us() + 60 * S  # the clock went back a minute across a restart
    tb = clocks.timebase(floor_us=floor)
    stamps = run(clocks, tb, 5)
    assert stamps[0] == floor + 1 and tb.health().steps_back == 1
    tb2 = clocks.timebase()
    tb2.raise_floor(floor)
    assert run(clocks, tb2, 1)[0] > floor


def test_now_is_read_in_the_camera_time_not_the_wall_clock():
    clocks = FakeClocks()
    floor = clocks.wall_us() + 60 * S
    tb = clocks.timebase(floor_us=floor)
    assert tb.now_us() == floor  # before the first stamp: the floor, when the wall clock is behind it
    run(clocks, tb, 3)
    clocks.mono += 5 * S
    assert tb.now_us() == tb.last_us + 5 * S  # a minute ahead of the wall clock, like the stamps
    clocks.shift += 3600 * S  # a forward step, held back for a keyframe: the stamps (and now) stay behind
    tb.stamp(may_step=False)
    assert tb.now_us() - clocks.wall_us() < -3500 * S


# Wall-clock behaviour: (monotonic advance, wall shift) per stamp; shifts up to +-10 days.
moves = st.lists(st.tuples(st.integers(0, 5 * S), st.integers(-10 * 86_400 * S, 10 * 86_400 * S)
                           | st.just(0) | st.integers(-2 * S, 2 * S)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(moves, st.integers(0, START * 2), st.booleans())
def test_property_strictly_increasing_bounded_slew_and_never_behind_the_last_stamp(steps, floor, hold):
    clocks = FakeClocks()
    tb = clocks.timebase(floor_us=floor)
    last = floor
    for advance, shift in steps:
        clocks.mono += advance
        clocks.shift += shift
        was = tb.last_us
        stamp = tb.stamp(may_step=not hold)
        assert stamp > last  # strictly increasing, after the floor
        if was > floor and not tb.stepped:
            # Never faster than the monotonic clock plus the slew bound, never slower than it minus the bound
            # (plus the 1 µs that keeps stamps strictly increasing).
            assert stamp - was <= advance + int(advance * MAX_SLEW) + 1
            assert stamp - was >= max(1, advance - int(advance * MAX_SLEW) - 1) or stamp == was + 1
        if tb.stepped:
            assert stamp == clocks.wall_us() and not hold  # a step lands on the wall clock, only where allowed
        if not hold:
            assert tb.health().offset_us >= -STEP_US  # never more than a step behind the wall clock
        last = stamp
