"""A camera's capture clock: the time every frame is stamped with (docs/time.md).

Stamps come from the monotonic clock, anchored to the wall clock at the first
stamp, and are strictly increasing. The wall clock is read with every stamp
and followed like this:

- a small disagreement (up to ``STEP_US`` either way) is slewed away at no
  more than ``MAX_SLEW`` (1%) of the elapsed time, so frame spacing stays true;
- a forward step (the wall clock jumped ahead by more than ``STEP_US``: NTP
  setting a Pi's clock at boot) is followed at once, where the caller allows a
  cut (``may_step``); the stamps then show a gap, and the segmenter cuts there;
- a backward step is never followed backwards: stamps run on from the last one
  and converge by the same bounded slew, so a camera's segments never overlap
  and no ``camera-start_us`` repeats.

``floor_us`` carries the last stamp across a restart (node/recording/spool.py
keeps it per camera): a node that boots with its clock behind its footage
starts after it. One instance per camera, used from its capture thread only;
``health`` may be read from anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.clock import monotonic_us, now_us
from shared.protocol.health import ClockHealth

STEP_US = 1_000_000  # a disagreement larger than this is a step, not drift (the segmenter's gap, too)
MAX_SLEW = 0.01  # at most 10 ms of correction per second of stamps: 30 s takes 50 minutes


class TimeBase:
    def __init__(self, wall_us: Callable[[], int] = now_us, mono_us: Callable[[], int] = monotonic_us, *,
                 floor_us: int = 0, step_us: int = STEP_US, max_slew: float = MAX_SLEW) -> None:
        self._wall, self._mono = wall_us, mono_us
        self.step_us, self.max_slew = step_us, max_slew
        self.last_us = floor_us  # every stamp is after this
        self._offset: int | None = None  # stamp = monotonic + offset; None until the first stamp
        self._last_mono = 0
        self._behind = False  # the wall clock is more than a step behind the stamps (counted once)
        self.stepped = False  # the last stamp followed a forward step: a cut belongs here
        self.steps_forward = self.steps_back = 0
        self._wall_at_last = 0

    def raise_floor(self, floor_us: int) -> None:
        """Stamps from now on come after ``floor_us`` (the last one an earlier run recorded)."""
        self.last_us = max(self.last_us, floor_us)

    def stamp(self, may_step: bool = True, age_us: int = 0) -> int:
        """The time of a frame captured now, or ``age_us`` ago (a camera that says when its sensor read the
        frame: Picamera2's ``SensorTimestamp``). ``may_step=False`` holds a forward step back (slewing on
        meanwhile) until a frame that can start a segment: a passed-through stream's keyframe."""
        mono, wall = self._mono() - max(0, age_us), self._wall() - max(0, age_us)
        target = wall - mono  # the offset that would put this stamp on the wall clock
        self.stepped = False
        if self._offset is None:
            offset = target
        else:
            offset = self._offset
            error = target - offset
            if error > self.step_us and may_step:
                offset = target
                self.stepped = True
                self.steps_forward += 1
            else:
                budget = int((mono - self._last_mono) * self.max_slew)
                offset += max(-budget, min(budget, error))
        stamp = mono + offset
        if stamp <= self.last_us:  # behind the last stamp (a backward step, a floor): run on from it
            stamp = self.last_us + 1
            offset = stamp - mono
        behind = stamp - wall > self.step_us
        if behind and not self._behind:
            self.steps_back += 1
        self._behind = behind
        self._offset, self._last_mono, self.last_us, self._wall_at_last = offset, mono, stamp, wall
        return stamp

    def now_us(self) -> int:
        """The time a frame captured now would get, without stamping one (read from any thread): "now" in this
        camera's time, which runs apart from the wall clock after a backward step, a floor, or a forward step
        held back for a keyframe. Before the first stamp, the wall clock (or the floor, if later)."""
        offset = self._offset
        now = self._wall() if offset is None else self._mono() + offset
        return max(now, self.last_us)

    def health(self) -> ClockHealth:
        offset = self.last_us - self._wall_at_last if self._offset is not None else 0
        return ClockHealth(offset, self.steps_forward, self.steps_back)
