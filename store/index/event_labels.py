"""What the store's object detection found in an event: its label columns, ``event_labels`` (search by label)
and its snapshot (``event_snapshots``), written by store/detect/service.py and read by the API.

``events.labels`` and the ``event_labels`` rows say the same thing, so they are written in one transaction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import aiosqlite

from store.index.db import transaction

Box = tuple[float, float, float, float]  # normalised x, y, w, h


@dataclass(frozen=True)
class EventLabelling:
    """An event's labels as the detector sees them now; each write replaces the last."""

    label: str | None  # the best confirmed object's label; None: nothing confirmed
    score: float | None  # its median score, 0..1
    box: Box | None  # its box in its best frame
    labels: dict[str, int]  # confirmed labels -> most seen at once ({} = analysed, nothing)

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in self.labels:
            raise ValueError(f"label {self.label!r} is not among the confirmed labels {sorted(self.labels)}")
        if self.score is not None and not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"label score must be in 0..1, got {self.score}")
        if self.box is not None and (len(self.box) != 4 or not all(math.isfinite(v) for v in self.box)):
            raise ValueError(f"label box must be 4 finite numbers (x, y, w, h), got {self.box!r}")
        if any(not isinstance(n, int) or n < 1 for n in self.labels.values()):
            raise ValueError(f"each label's count must be a positive integer, got {self.labels}")


async def set_event_labelling(conn: aiosqlite.Connection, event_id: int, labelling: EventLabelling) -> None:
    """Write an event's label columns and its ``event_labels`` rows, replacing what was there, atomically.

    Raises ``LookupError`` for an event id the index does not hold (nothing is written).
    """
    box = labelling.box or (None, None, None, None)
    async with transaction(conn):
        cur = await conn.execute(
            "UPDATE events SET label = ?, label_score = ?, label_x = ?, label_y = ?, label_w = ?, label_h = ?, "
            "labels = ? WHERE id = ?",
            (labelling.label, labelling.score, *box, json.dumps(labelling.labels, sort_keys=True), event_id),
        )
        if cur.rowcount == 0:
            raise LookupError(f"no event with id {event_id}")
        await conn.execute("DELETE FROM event_labels WHERE event_id = ?", (event_id,))
        await conn.executemany("INSERT INTO event_labels (label, event_id, count) VALUES (?, ?, ?)",
                               [(label, event_id, count) for label, count in sorted(labelling.labels.items())])


async def set_event_snapshot(conn: aiosqlite.Connection, event_id: int, frame_us: int, width: int, height: int,
                             jpeg: bytes) -> None:
    """Store (or replace) an event's snapshot. Raises ``LookupError`` for an event the index does not hold."""
    async with transaction(conn):
        async with conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)) as cur:
            if await cur.fetchone() is None:
                raise LookupError(f"no event with id {event_id}")
        await conn.execute(
            "INSERT INTO event_snapshots (event_id, frame_us, width, height, jpeg) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (event_id) DO UPDATE SET frame_us = excluded.frame_us, width = excluded.width, "
            "height = excluded.height, jpeg = excluded.jpeg",
            (event_id, frame_us, width, height, bytes(jpeg)),
        )


async def event_snapshot(conn: aiosqlite.Connection, event_id: int) -> tuple[int, int, int, bytes] | None:
    """(frame_us, width, height, jpeg) of an event's snapshot, or None when it has none."""
    async with conn.execute("SELECT frame_us, width, height, jpeg FROM event_snapshots WHERE event_id = ?",
                            (event_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]), bytes(row[3]))
