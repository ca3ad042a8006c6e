"""Exponential backoff with jitter for every reconnect loop.

Each delay is drawn from [ceiling/2, ceiling] ("equal jitter"): never a near-zero
wait that would hammer a recovering peer, yet spread enough that many nodes
coming back at once do not reconnect in lockstep.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.25, maximum: float = 10.0, factor: float = 2.0) -> None:
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.attempts = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
