"""``sht store restore --from s3://...``: a store built from its off-site copy, into an empty root.

Every segment object is read, checked against the SHA-256 its row carries (``x-amz-meta-sht-row``; an object
without that row is described from the MP4's own metadata, as ``rebuild-index`` does), written to the new
store's segment storage (``ROOT/segments`` or ``--segments``), and indexed with that row; then every event
object is indexed with its labels (``event_labels`` again from ``labels``) and its snapshot. ``nodes`` gets one
row per node that recorded a segment. Settings, keys and tokens are not in the copy: the restored store makes a
new signing key at its first start, so tokens are made anew.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from shared.clock import now_us
from store.index import index_path
from store.index.db import Index
from store.index.shapes import shape_of_bytes
from store.maintenance.check import describe_segment, insert_row
from store.playback.segment_shape import SHAPE_COLUMNS
from store.replica import FORMAT
from store.replica.bucket import ReplicaBucket
from store.replica.records import (
    EVENT_COLUMNS,
    EVENTS,
    MARKER,
    SEGMENTS,
    ReplicaFormatError,
    labels_of,
    parse_event_document,
    row_from_metadata,
    segment_name_of_key,
)
from store.segments import SegmentStore, StoredSegment

log = logging.getLogger(__name__)

PARALLEL = 4
COMMIT_EVERY = 500


class RestoreError(ValueError):
    """The copy cannot be restored (not a replica, one from a newer store); the message says why."""


@dataclass
class RestoreReport:
    segments: int = 0
    bytes: int = 0
    events: int = 0
    snapshots: int = 0
    described: int = 0  # segments whose row came from the MP4, not from the object's metadata
    skipped: list[str] = field(default_factory=list)  # objects not restored, and why
    duration_s: float = 0.0


async def restore(root: Path, bucket: ReplicaBucket, segments: SegmentStore) -> RestoreReport:
    """Fill the empty ``root`` (its index) and ``segments`` (started) from the replica ``bucket`` (started)."""
    started = time.monotonic()
    await check_marker(bucket)
    report = RestoreReport()
    index = await Index.open(index_path(root))
    try:
        await _restore_segments(index.conn, bucket, segments, report)
        await _restore_events(index.conn, bucket, report)
        await index.conn.execute(
            "INSERT INTO nodes (node, first_seen_us, last_seen_us) SELECT node, MIN(received_us), MAX(received_us) "
            "FROM segments GROUP BY node")
        await index.conn.commit()
    finally:
        await index.close()
    report.duration_s = time.monotonic() - started
    return report


async def check_marker(bucket: ReplicaBucket) -> None:
    try:
        data, _ = await bucket.get_object(MARKER)
    except FileNotFoundError:
        raise RestoreError(f"{bucket.description} holds no off-site copy (no {bucket.key(MARKER)}): is --from "
                           "right, prefix included?") from None
    try:
        version = json.loads(data)["format"]
    except (ValueError, KeyError, TypeError):
        raise RestoreError(f"{bucket.key(MARKER)} at {bucket.description} is not a replica's marker") from None
    if not isinstance(version, int) or version > FORMAT:
        raise RestoreError(f"the copy at {bucket.description} has format {version!r}; this sht reads format "
                           f"{FORMAT} or older: restore with a newer sht")


async def _restore_segments(conn: aiosqlite.Connection, bucket: ReplicaBucket, segments: SegmentStore,
                            report: RestoreReport) -> None:
    keys = sorted([(key, size) async for key, size in bucket.keys_below(SEGMENTS)])
    semaphore, writing = asyncio.Semaphore(PARALLEL), asyncio.Lock()

    async def one(key: str, size: int) -> None:
        name = segment_name_of_key(key)
        if name is None:
            report.skipped.append(f"{key}: not a segment's name")
            return
        async with semaphore:
            row = await _restore_segment(bucket, segments, key, name, report)
        if row is None:
            return
        async with writing:
            await insert_row(conn, row)
            report.segments += 1
            report.bytes += int(row["size_bytes"])
            if report.segments % COMMIT_EVERY == 0:
                await conn.commit()

    await asyncio.gather(*(one(key, size) for key, size in keys))
    await conn.commit()


async def _restore_segment(bucket: ReplicaBucket, segments: SegmentStore, key: str, name: str,
                           report: RestoreReport) -> dict[str, Any] | None:
    data, metadata = await bucket.get_object(key)
    sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    try:
        row: dict[str, Any] | None = row_from_metadata(metadata, name, len(data))
    except ReplicaFormatError as exc:
        log.info("%s: %s; described from its MP4 instead", key, exc)
        row = None
    if row is not None and row["sha256"] != sha256:
        report.skipped.append(f"{key}: its bytes hash to {sha256[:16]}…, its row says {str(row['sha256'])[:16]}…: "
                              "damaged in the copy")
        return None
    await segments.put(name, data, sha256)
    if row is not None:
        # Not in the replica's metadata (older stores wrote none): read from the bytes in hand, as ingest does.
        shape = await asyncio.to_thread(shape_of_bytes, data, name)
        row |= dict(zip(SHAPE_COLUMNS, (None,) * len(SHAPE_COLUMNS) if shape is None else shape.values(),
                        strict=True))
    if row is None:
        try:
            row = await asyncio.to_thread(describe_segment, segments, StoredSegment(name, len(data), now_us()))
        except (ValueError, FileNotFoundError) as exc:
            await segments.delete_many([name])
            report.skipped.append(f"{key}: no row with it and its MP4 cannot be read ({exc})")
            return None
        report.described += 1
    return row


async def _restore_events(conn: aiosqlite.Connection, bucket: ReplicaBucket, report: RestoreReport) -> None:
    keys = sorted([key async for key, _ in bucket.keys_below(EVENTS) if key.endswith(".json")])
    semaphore, writing = asyncio.Semaphore(PARALLEL), asyncio.Lock()

    async def one(key: str) -> None:
        async with semaphore:
            loaded = await _load_event(bucket, key, report)
        if loaded is None:
            return
        row, snapshot = loaded
        async with writing:
            await _insert_event(conn, row, snapshot)
            report.events += 1
            report.snapshots += snapshot is not None
            if report.events % COMMIT_EVERY == 0:
                await conn.commit()

    await asyncio.gather(*(one(key) for key in keys))
    await conn.commit()


async def _load_event(bucket: ReplicaBucket, key: str,
                      report: RestoreReport) -> tuple[dict[str, Any], tuple[dict[str, Any], bytes] | None] | None:
    data, _ = await bucket.get_object(key)
    try:
        event = parse_event_document(data, key)
    except ReplicaFormatError as exc:
        report.skipped.append(str(exc))
        return None
    if event.snapshot is None:
        return event.row, None
    shot = event.snapshot
    try:
        jpeg, _ = await bucket.get_object(str(shot["key"]))
    except FileNotFoundError:
        report.skipped.append(f"{shot['key']}: the snapshot of {key} is missing; the event is restored without it")
        return event.row, None
    if hashlib.sha256(jpeg).hexdigest() != shot["sha256"]:
        report.skipped.append(f"{shot['key']}: damaged in the copy (SHA-256 differs); the event is restored "
                              "without it")
        return event.row, None
    return event.row, (shot, jpeg)


async def _insert_event(conn: aiosqlite.Connection, row: dict[str, Any],
                        snapshot: tuple[dict[str, Any], bytes] | None) -> None:
    cur = await conn.execute(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(EVENT_COLUMNS))})", tuple(row[c] for c in EVENT_COLUMNS))
    event_id = cur.lastrowid
    await conn.executemany("INSERT INTO event_labels (label, event_id, count) VALUES (?, ?, ?)",
                           [(label, event_id, count) for label, count in labels_of(row)])
    if snapshot is not None:
        shot, jpeg = snapshot
        await conn.execute("INSERT INTO event_snapshots (event_id, frame_us, width, height, jpeg) VALUES "
                           "(?, ?, ?, ?, ?)", (event_id, int(shot["frame_us"]), int(shot["width"]),
                                               int(shot["height"]), jpeg))
