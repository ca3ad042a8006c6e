"""What the replica holds, as keys and bytes (sans-I/O): the segment row carried in an object's metadata, and the
event objects. Both directions live here, so that what the store writes and what a restore reads cannot drift.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.ids import check_id
from store.replica import FORMAT
from store.segments import name_of, row_path

MARKER = "replica.json"
SEGMENTS = "segments/"
EVENTS = "events/"
ROW_METADATA = "sht-row"  # x-amz-meta-sht-row: the segment's index row, as JSON
# A segments row but its id (another index numbers it anew) and path (the object's key says it).
SEGMENT_COLUMNS = ("camera", "node", "start_us", "end_us", "frames", "size_bytes", "sha256", "codec", "width_px",
                   "height_px", "received_us")
# An events row but its id (store/index/schema.sql; tests/store/test_replica_records.py checks none is missing).
EVENT_COLUMNS = ("camera", "node", "start_us", "end_us", "kind", "score", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
                 "thumb_us", "detail", "locked", "open", "label", "label_score", "label_x", "label_y", "label_w",
                 "label_h", "labels")
_INT_COLUMNS = {"start_us", "end_us", "frames", "size_bytes", "width_px", "height_px", "received_us", "thumb_us",
                "locked", "open"}
_KINDS = ("motion", "loss", "camera-stalled")


class ReplicaFormatError(ValueError):
    """An object of the replica that is not what this store writes (damaged, or from a newer store)."""


def segment_key(path: str) -> str | None:
    """The key (below the prefix) of the segment whose row has this ``path``; None for a path the store never
    writes (such a row is not copied)."""
    name = name_of(path)
    return None if name is None else row_path(name)


def segment_name_of_key(key: str) -> str | None:
    """The segment name of a key below ``segments/`` (None for anything else)."""
    if not key.startswith(SEGMENTS) or not key.endswith(".mp4"):
        return None
    return name_of(key)


def row_metadata(row: dict[str, Any]) -> dict[str, str]:
    """The object metadata that carries a segments row (ASCII JSON: S3 metadata is ASCII only)."""
    return {ROW_METADATA: json.dumps({c: row[c] for c in SEGMENT_COLUMNS}, separators=(",", ":"))}


def row_from_metadata(metadata: dict[str, str], name: str, size: int) -> dict[str, Any]:
    """The segments row an object's metadata carries, for the segment ``name`` of ``size`` bytes; raises
    ``ReplicaFormatError`` when it is missing or does not fit the object."""
    text = metadata.get(ROW_METADATA)
    if text is None:
        raise ReplicaFormatError("no sht-row metadata")
    try:
        given = json.loads(text)
        row = {c: given[c] for c in SEGMENT_COLUMNS}
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplicaFormatError(f"sht-row metadata unreadable ({exc})") from None
    for column in SEGMENT_COLUMNS:
        value = row[column]
        wanted = int if column in _INT_COLUMNS else str
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise ReplicaFormatError(f"sht-row metadata: {column} is {value!r}")
    from store.segments import segment_name

    try:
        expected = segment_name(row["camera"], row["start_us"])
    except ValueError as exc:
        raise ReplicaFormatError(f"sht-row metadata: {exc}") from None
    if expected != name or row["size_bytes"] != size:
        raise ReplicaFormatError(f"sht-row metadata describes {expected} of {row['size_bytes']} bytes, not this "
                                 f"object ({name}, {size} bytes)")
    return row | {"path": row_path(name)}


@dataclass(frozen=True)
class Snapshot:
    frame_us: int
    width: int
    height: int
    size: int


def event_base(camera: str, start_us: int, kind: str) -> str:
    """``events/CAMERA/YYYY-MM-DD/<start_us>-<kind>``: an event's objects are named from this."""
    if kind not in _KINDS:
        raise ValueError(f"event kind {kind!r} is not one of {_KINDS}")
    day = datetime.fromtimestamp(start_us / 1e6, tz=UTC).strftime("%Y-%m-%d")
    return f"{EVENTS}{check_id(camera, 'camera id')}/{day}/{int(start_us)}-{kind}"


def event_key(row: dict[str, Any]) -> str:
    return event_base(row["camera"], row["start_us"], row["kind"]) + ".json"


def snapshot_key(row: dict[str, Any], frame_us: int) -> str:
    """A snapshot's own key: a better one later gets another name, so the JSON never names changed bytes."""
    return f"{event_base(row['camera'], row['start_us'], row['kind'])}-{int(frame_us)}.jpg"


def event_digest(row: dict[str, Any], snapshot: Snapshot | None) -> int:
    """A fingerprint of what an event's objects hold (64 bits): copied again when it changes."""
    text = json.dumps([[row[c] for c in EVENT_COLUMNS], None if snapshot is None else
                       [snapshot.frame_us, snapshot.width, snapshot.height, snapshot.size]], separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def event_document(row: dict[str, Any], snapshot: Snapshot | None, snapshot_sha256: str | None) -> bytes:
    """The JSON object of one event (its row without the id; the snapshot's key and SHA-256 when it has one)."""
    shot = None
    if snapshot is not None:
        shot = {"key": snapshot_key(row, snapshot.frame_us), "frame_us": snapshot.frame_us,
                "width": snapshot.width, "height": snapshot.height, "size": snapshot.size, "sha256": snapshot_sha256}
    return json.dumps({"format": FORMAT, "event": {c: row[c] for c in EVENT_COLUMNS}, "snapshot": shot},
                      sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class EventObject:
    row: dict[str, Any]  # EVENT_COLUMNS
    snapshot: dict[str, Any] | None  # key, frame_us, width, height, size, sha256


def parse_event_document(data: bytes, key: str) -> EventObject:
    """An event object read back; ``ReplicaFormatError`` naming what is wrong."""
    try:
        doc = json.loads(data)
        version, given, shot = doc["format"], doc["event"], doc["snapshot"]
        row = {c: given[c] for c in EVENT_COLUMNS}
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplicaFormatError(f"{key}: not an event object ({exc})") from None
    if not isinstance(version, int) or version > FORMAT:
        raise ReplicaFormatError(f"{key}: format {version!r}, this store reads format {FORMAT} or older: upgrade it")
    for column in ("start_us", "end_us", "locked", "open"):
        if not isinstance(row[column], int) or isinstance(row[column], bool):
            raise ReplicaFormatError(f"{key}: {column} is {row[column]!r}")
    if not isinstance(row["score"], (int, float)) or not math.isfinite(row["score"]):
        raise ReplicaFormatError(f"{key}: score is {row['score']!r}")
    try:
        if event_key(row) != key:
            raise ReplicaFormatError(f"{key}: it holds the event {event_key(row)}")
    except ValueError as exc:
        raise ReplicaFormatError(f"{key}: {exc}") from None
    if shot is not None:
        try:
            snapshot = {k: shot[k] for k in ("key", "frame_us", "width", "height", "size", "sha256")}
        except (KeyError, TypeError) as exc:
            raise ReplicaFormatError(f"{key}: snapshot unreadable ({exc})") from None
        if snapshot["key"] != snapshot_key(row, snapshot["frame_us"]):
            raise ReplicaFormatError(f"{key}: its snapshot {snapshot['key']!r} is not named for it")
        return EventObject(row, snapshot)
    return EventObject(row, None)


def labels_of(row: dict[str, Any]) -> list[tuple[str, int]]:
    """The ``event_labels`` rows an event's ``labels`` column says (label, count); [] when never analysed."""
    if row["labels"] is None:
        return []
    try:
        labels = json.loads(row["labels"])
    except ValueError:
        return []
    return sorted((str(k), int(v)) for k, v in labels.items()) if isinstance(labels, dict) else []
