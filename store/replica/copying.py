"""Copying one thing to the replica: a segment (its bytes, checked against its row, then PUT with that SHA-256)
or an event (its snapshot, then its JSON). Reads go through the store's own index connection of the replica
and its segment storage; a failure of the replica raises (the caller backs off), a segment that cannot be
read for good is skipped with an error in the log (``sht store check`` finds what is wrong with it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiosqlite

from store.replica.bucket import ReplicaBucket
from store.replica.records import (
    EVENT_COLUMNS,
    SEGMENT_COLUMNS,
    Snapshot,
    event_digest,
    event_document,
    event_key,
    row_metadata,
    segment_key,
    snapshot_key,
)
from store.segments import SegmentStore, SegmentStoreError, name_of
from store.segments.s3 import S3Segments

log = logging.getLogger(__name__)

SEGMENT_SELECT = f"SELECT id, path, {', '.join(SEGMENT_COLUMNS)} FROM segments"
_EVENT_SELECT = (f"SELECT e.id, {', '.join('e.' + c for c in EVENT_COLUMNS)}, s.frame_us, s.width, s.height, "
                 "LENGTH(s.jpeg) FROM events e LEFT JOIN event_snapshots s ON s.event_id = e.id")
EVENT_PAGE = 5000


@dataclass
class Copied:
    """What was copied since the store started (for /health and /metrics)."""

    segments: int = 0
    events: int = 0
    snapshots: int = 0
    bytes: int = 0
    skipped: int = 0  # segments whose bytes could not be read or were damaged (see the log)


@dataclass(frozen=True)
class SegmentRow:
    row_id: int
    path: str
    row: dict[str, Any]  # SEGMENT_COLUMNS

    @classmethod
    def of(cls, values: tuple[Any, ...]) -> SegmentRow:
        return cls(int(values[0]), str(values[1]), dict(zip(SEGMENT_COLUMNS, values[2:], strict=True)))


async def segments_after(conn: aiosqlite.Connection, after: int, limit: int, but: list[int]) -> list[SegmentRow]:
    """The first ``limit`` rows after id ``after`` whose id is not in ``but`` (those already copied)."""
    skip = f" AND id NOT IN ({','.join('?' * len(but))})" if but else ""
    async with conn.execute(f"{SEGMENT_SELECT} WHERE id > ?{skip} ORDER BY id LIMIT ?", (after, *but, limit)) as cur:
        return [SegmentRow.of(tuple(r)) for r in await cur.fetchall()]


async def read_segment(source: SegmentStore, name: str) -> bytes:
    """The segment's bytes from the store's own storage; ``FileNotFoundError`` if it has none."""
    if isinstance(source, S3Segments):
        return await source._get(name)  # straight from the bucket: a replica pass must not empty the read cache

    def read() -> bytes:
        with source.open_local(name) as path:
            return path.read_bytes()

    return await asyncio.to_thread(read)


class SegmentMismatch(ValueError):
    """A segment's bytes do not match its index row (size or SHA-256); the message says how."""


async def read_matching(source: SegmentStore, name: str, size: int, sha256: str) -> bytes:
    """The segment's bytes, checked against its row's ``size`` and ``sha256`` before they go anywhere (the replica
    and ``sht store migrate`` both copy only what the row vouches for). ``FileNotFoundError`` if there are none,
    ``SegmentMismatch`` if they differ."""
    data = await read_segment(source, name)
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    if digest != sha256 or len(data) != size:
        raise SegmentMismatch(f"{len(data)} bytes, SHA-256 {digest[:16]}…; the row says {size}, {sha256[:16]}…")
    return data


async def copy_segment(conn: aiosqlite.Connection, source: SegmentStore, bucket: ReplicaBucket, segment: SegmentRow,
                       copied: Copied) -> None:
    """PUT one segment (raises ``OSError`` when the replica or the source storage fails: try again later).
    Returns quietly when it is done with it: copied, gone (retention deleted it meanwhile) or skipped for good."""
    key, name = segment_key(segment.path), name_of(segment.path)
    if key is None or name is None:
        log.error("replica: segment row %d has path %r, which the store never writes: not copied", segment.row_id,
                  segment.path)
        copied.skipped += 1
        return
    sha256 = str(segment.row["sha256"])
    try:
        data = await read_matching(source, name, int(segment.row["size_bytes"]), sha256)
    except FileNotFoundError:
        if await _row_exists(conn, segment.row_id):
            log.error("replica: %s has an index row but no bytes in %s: not copied (sht store check finds it)",
                      segment.path, source.description)
            copied.skipped += 1
        return  # else retention deleted it after it was read from the index: nothing to copy
    except SegmentMismatch as exc:
        log.error("replica: %s does not match its index row (%s): not copied (sht store check --deep finds it)",
                  segment.path, exc)
        copied.skipped += 1
        return
    await bucket.put_object(key, data, sha256, "video/mp4", row_metadata(segment.row))
    copied.segments += 1
    copied.bytes += len(data)


async def _row_exists(conn: aiosqlite.Connection, row_id: int) -> bool:
    async with conn.execute("SELECT 1 FROM segments WHERE id = ?", (row_id,)) as cur:
        return await cur.fetchone() is not None


@dataclass(frozen=True)
class EventRow:
    event_id: int
    row: dict[str, Any]  # EVENT_COLUMNS
    snapshot: Snapshot | None

    @property
    def digest(self) -> int:
        return event_digest(self.row, self.snapshot)

    @classmethod
    def of(cls, values: tuple[Any, ...]) -> EventRow:
        n = len(EVENT_COLUMNS)
        row = dict(zip(EVENT_COLUMNS, values[1:n + 1], strict=True))
        frame_us, width, height, size = values[n + 1:]
        snapshot = None if frame_us is None else Snapshot(int(frame_us), int(width), int(height), int(size))
        return cls(int(values[0]), row, snapshot)


async def events_after(conn: aiosqlite.Connection, after: int = 0) -> AsyncIterator[list[EventRow]]:
    """The events after id ``after`` (with their snapshot's figures, not its bytes), in id order, a page at a
    time along the primary key (a full scan never holds them all)."""
    while True:
        async with conn.execute(f"{_EVENT_SELECT} WHERE e.id > ? ORDER BY e.id LIMIT ?", (after, EVENT_PAGE)) as cur:
            page = [EventRow.of(tuple(r)) for r in await cur.fetchall()]
        if page:
            yield page
        if len(page) < EVENT_PAGE:
            return
        after = page[-1].event_id


async def events_by_id(conn: aiosqlite.Connection, ids: list[int]) -> list[EventRow]:
    async with conn.execute(f"{_EVENT_SELECT} WHERE e.id IN ({','.join('?' * len(ids))}) ORDER BY e.id",
                            tuple(ids)) as cur:
        return [EventRow.of(tuple(r)) for r in await cur.fetchall()]


async def open_events(conn: aiosqlite.Connection) -> list[EventRow]:
    """The events still going on (a few: one per camera at most), through the index of open events."""
    async with conn.execute(f"{_EVENT_SELECT} WHERE e.open = 1") as cur:
        return [EventRow.of(tuple(r)) for r in await cur.fetchall()]


async def copy_event(conn: aiosqlite.Connection, bucket: ReplicaBucket, event: EventRow, copied: Copied) -> bool:
    """PUT one event's snapshot (if it has one) and then its JSON. False when the snapshot changed since the
    event was read (the next scan reads it again); raises ``OSError`` when the replica fails."""
    snapshot_sha = None
    if event.snapshot is not None:
        async with conn.execute("SELECT jpeg FROM event_snapshots WHERE event_id = ? AND frame_us = ?",
                                (event.event_id, event.snapshot.frame_us)) as cur:
            found = await cur.fetchone()
        if found is None:
            return False
        jpeg = bytes(found[0])
        snapshot_sha = hashlib.sha256(jpeg).hexdigest()
        await bucket.put_object(snapshot_key(event.row, event.snapshot.frame_us), jpeg, snapshot_sha, "image/jpeg")
        copied.snapshots += 1
        copied.bytes += len(jpeg)
    document = event_document(event.row, event.snapshot, snapshot_sha)
    await bucket.put_object(event_key(event.row), document, hashlib.sha256(document).hexdigest(), "application/json")
    copied.events += 1
    copied.bytes += len(document)
    return True


def describe_failure(exc: BaseException) -> str:
    """One line for /health and the log."""
    if isinstance(exc, SegmentStoreError):
        return exc.message
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
