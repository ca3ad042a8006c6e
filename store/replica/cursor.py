"""Which ``segments`` rows the replica holds, by row id (sans-I/O; ``state`` keeps it on disk).

Rows are copied in id order, and ids grow as rows are committed, so "every id up to ``upto``" is most of it. Two
things keep that from being the whole story, and both are why ``above`` exists:

- an id that is missing below a present one may still come: on PostgreSQL an id is taken at INSERT and seen at
  COMMIT, so with several writers a higher id can be seen first. A missing id is only given up once it has been
  missing for ``settle_s`` (ids that never come: a rolled back insert, a row retention deleted before it was
  copied);
- the rows above such a gap are copied meanwhile (ingest does not wait for a gap), and remembered in ``above``
  until ``upto`` passes them.

So a copied id is never copied again, and an id is only passed over once it is copied, skipped for good (its
bytes are gone or damaged: ``handled``), or missing for ``settle_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SETTLE_S = 30.0


@dataclass
class SegmentCursor:
    upto: int = 0  # every id <= upto is handled
    above: dict[int, int] = field(default_factory=dict)  # handled ids > upto -> their size in bytes
    gap_seen: dict[int, float] = field(default_factory=dict)  # first id of a gap -> when first seen (not saved)

    def wanted(self, ids: list[int]) -> list[int]:
        """Of the ids read after ``upto``, those still to copy."""
        return [i for i in ids if i > self.upto and i not in self.above]

    def handled(self, row_id: int, size: int) -> None:
        if row_id > self.upto:
            self.above[row_id] = size

    def advance(self, present: list[int], now: float, settle_s: float = SETTLE_S, *, complete: bool = True) -> None:
        """Move ``upto`` over what is handled. ``present``: the ids read after ``upto`` that are not in ``above``
        (ascending); ``complete``: they are all there are (False: a read with a limit, which says nothing above
        its last id). ``now``: a monotonic clock."""
        present_set = set(present)
        known = sorted(present_set | self.above.keys())
        if not complete:
            known = [i for i in known if present and i <= present[-1]]
        # Every gap between known ids starts its clock now, so that gaps settle side by side, not one by one.
        previous = self.upto
        for following in known:
            if following > previous + 1:
                self.gap_seen.setdefault(previous + 1, now)
            previous = following
        for following in known:
            if following > self.upto + 1:  # a gap: ids upto+1 .. following-1 are neither there nor handled
                if now - self.gap_seen[self.upto + 1] < settle_s:
                    break
                self.upto = following - 1  # missing long enough: given up
            if following in present_set and following not in self.above:
                break  # there, not copied yet
            self.upto = following
        self.above = {i: s for i, s in self.above.items() if i > self.upto}
        self.gap_seen = {i: t for i, t in self.gap_seen.items() if i > self.upto}

    def reset(self) -> None:
        self.upto, self.above, self.gap_seen = 0, {}, {}
