"""The results of the query API's read methods (``segments``, ``events``, ``timeline``, ``thumbnail``,
``export``, ``lock_event``, ``revoked``) as typed records.

The store builds each answer from these and sends ``to_json()``; clients read a
``Result`` with ``from_json``, which validates every field the same way
(``FieldReader``) and raises a ``bad-field`` ``ProtocolError`` naming the bad one.
The JSON is the one docs/protocol.md describes. (``fleet`` is in fleet.py;
settings answers belong to shared/settings.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.fields import FieldReader
from shared.protocol.errors import read_message
from shared.protocol.labels import MAX_LABEL_CHARS, is_label

Cursor = tuple[int, int]  # (start_us, row id) of a page's last item: the ``after`` of the next request


@dataclass(frozen=True)
class Segment:
    """One recorded segment, as ``segments`` lists it."""

    id: int
    camera: str
    node: str
    start_us: int
    end_us: int
    frames: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "camera": self.camera, "node": self.node, "start_us": self.start_us,
                "end_us": self.end_us, "frames": self.frames, "bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def read(cls, r: FieldReader) -> Segment:
        return cls(r.integer("id"), r.string("camera"), r.string("node"), r.integer("start_us"),
                   r.integer("end_us"), r.integer("frames"), r.integer("bytes"), r.string("sha256"))

    @property
    def cursor(self) -> Cursor:
        return self.start_us, self.id


@dataclass(frozen=True)
class Event:
    """One event (motion, or footage a node lost), as ``events`` lists it.

    The fields after ``detail`` came with object detection (store v3); an older store's answer lacks them
    and reads with their defaults.
    """

    id: int
    camera: str
    node: str
    start_us: int
    end_us: int
    kind: str
    score: float
    bbox: tuple[float, float, float, float] | None  # normalised x, y, w, h
    thumb_us: int | None
    locked: bool
    detail: str = ""
    open: bool = False  # still going on: end_us is the latest the store knows
    label: str | None = None  # what the store's detector confirmed in it (its best object); None: nothing
    label_score: float | None = None  # that object's median score
    label_box: tuple[float, float, float, float] | None = None  # its box in the snapshot, normalised x, y, w, h
    labels: dict[str, int] | None = None  # each confirmed label -> most seen at once; None: not analysed
    snapshot: bool = False  # the API's ``snapshot`` has a picture of it

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "camera": self.camera, "node": self.node, "start_us": self.start_us,
                "end_us": self.end_us, "kind": self.kind, "score": self.score,
                "bbox": list(self.bbox) if self.bbox is not None else None, "thumb_us": self.thumb_us,
                "locked": self.locked, "detail": self.detail, "open": self.open, "label": self.label,
                "label_score": self.label_score,
                "label_box": list(self.label_box) if self.label_box is not None else None,
                "labels": dict(self.labels) if self.labels is not None else None, "snapshot": self.snapshot}

    @classmethod
    def read(cls, r: FieldReader) -> Event:
        return cls(r.integer("id"), r.string("camera"), r.string("node"), r.integer("start_us"),
                   r.integer("end_us"), r.string("kind"), r.number("score"), _box(r, "bbox"),
                   r.integer("thumb_us", None, nullable=True), r.boolean("locked"),
                   r.string("detail", "", nullable=True, empty=True) or "",
                   r.boolean("open", False), _label(r, "label"),
                   r.number("label_score", None, minimum=0, maximum=1, nullable=True), _box(r, "label_box"),
                   _label_counts(r), r.boolean("snapshot", False))

    @property
    def cursor(self) -> Cursor:
        return self.start_us, self.id


def _box(r: FieldReader, key: str) -> tuple[float, float, float, float] | None:
    if r.data.get(key) is None:
        return None
    x, y, w, h = r.numbers(key, 4)
    return x, y, w, h


def _label(r: FieldReader, key: str) -> str | None:
    value = r.string(key, None, nullable=True)
    if value is not None and not is_label(value):
        raise r.error(key, f"must be 1..{MAX_LABEL_CHARS} printable characters, got {value!r}")
    return value


def _label_counts(r: FieldReader) -> dict[str, int] | None:
    value = r.json_object("labels", None, nullable=True)
    if value is None:
        return None
    if not all(is_label(k) and isinstance(n, int) and not isinstance(n, bool) and n >= 1 for k, n in value.items()):
        raise r.error("labels", f"must map labels to counts of at least 1, got {value!r}")
    return value


def _cursor(r: FieldReader) -> Cursor | None:
    value = r.data.get("next")
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise r.error("next", f"must be null or [start_us, id], got {value!r}")
    return value[0], value[1]


@dataclass(frozen=True)
class SegmentPage:
    """A page of ``segments``; ``next`` is the cursor for the following page, None after the last."""

    items: tuple[Segment, ...]
    next: Cursor | None = None

    @classmethod
    def of(cls, items: list[Segment], more: bool) -> SegmentPage:
        return cls(tuple(items), items[-1].cursor if more and items else None)

    def to_json(self) -> dict[str, Any]:
        return {"items": [s.to_json() for s in self.items], "next": list(self.next) if self.next else None}

    @classmethod
    def from_json(cls, data: object) -> SegmentPage:
        return read_message(data, "segments result", lambda r: cls(
            tuple(Segment.read(c) for c in r.children("items")), _cursor(r)))


@dataclass(frozen=True)
class EventPage:
    """A page of ``events``; ``next`` is the cursor for the following page, None after the last."""

    items: tuple[Event, ...]
    next: Cursor | None = None

    @classmethod
    def of(cls, items: list[Event], more: bool) -> EventPage:
        return cls(tuple(items), items[-1].cursor if more and items else None)

    def to_json(self) -> dict[str, Any]:
        return {"items": [e.to_json() for e in self.items], "next": list(self.next) if self.next else None}

    @classmethod
    def from_json(cls, data: object) -> EventPage:
        return read_message(data, "events result", lambda r: cls(
            tuple(Event.read(c) for c in r.children("items")), _cursor(r)))


@dataclass(frozen=True)
class TimelineBucket:
    start_us: int
    segments: int  # segments starting in the bucket
    events: int
    recorded_us: int

    def to_json(self) -> dict[str, Any]:
        return {"start_us": self.start_us, "segments": self.segments, "events": self.events,
                "recorded_us": self.recorded_us}

    @classmethod
    def read(cls, r: FieldReader) -> TimelineBucket:
        return cls(r.integer("start_us"), r.integer("segments", minimum=0), r.integer("events", minimum=0),
                   r.integer("recorded_us", minimum=0))


@dataclass(frozen=True)
class Timeline:
    """One camera's coverage over a range: recorded intervals, the gaps between, and per-bucket counts."""

    camera: str
    from_us: int
    to_us: int
    bucket: str  # minute, hour or day
    intervals: tuple[tuple[int, int], ...]
    gaps: tuple[tuple[int, int], ...]
    recorded_us: int
    buckets: tuple[TimelineBucket, ...]

    def to_json(self) -> dict[str, Any]:
        return {"camera": self.camera, "from_us": self.from_us, "to_us": self.to_us, "bucket": self.bucket,
                "intervals": [list(i) for i in self.intervals], "gaps": [list(g) for g in self.gaps],
                "recorded_us": self.recorded_us, "buckets": [b.to_json() for b in self.buckets]}

    @classmethod
    def read(cls, r: FieldReader) -> Timeline:
        return cls(r.string("camera"), r.integer("from_us"), r.integer("to_us"), r.string("bucket"),
                   tuple(r.spans("intervals")), tuple(r.spans("gaps")), r.integer("recorded_us", minimum=0),
                   tuple(TimelineBucket.read(b) for b in r.children("buckets")))

    @classmethod
    def from_json(cls, data: object) -> Timeline:
        return read_message(data, "timeline result", cls.read)


@dataclass(frozen=True)
class Thumbnail:
    """The ``thumbnail`` result; the JPEG itself came before it as binary chunks."""

    frame_us: int  # capture time of the frame shown
    width: int
    height: int
    bytes: int
    content_type: str = "image/jpeg"

    def to_json(self) -> dict[str, Any]:
        return {"content_type": self.content_type, "bytes": self.bytes, "frame_us": self.frame_us,
                "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, data: object) -> Thumbnail:
        return read_message(data, "thumbnail result", lambda r: cls(
            r.integer("frame_us"), r.integer("width", minimum=0), r.integer("height", minimum=0),
            r.integer("bytes", minimum=0), r.string("content_type")))


@dataclass(frozen=True)
class ExportResult:
    """The ``export`` result; the MP4 came before it as binary chunks."""

    camera: str
    start_us: int
    end_us: int
    frames: int
    segments: int  # segments the clip was cut from
    bytes: int
    content_type: str = "video/mp4"

    def to_json(self) -> dict[str, Any]:
        return {"camera": self.camera, "start_us": self.start_us, "end_us": self.end_us, "frames": self.frames,
                "segments": self.segments, "bytes": self.bytes, "content_type": self.content_type}

    @classmethod
    def from_json(cls, data: object) -> ExportResult:
        return read_message(data, "export result", lambda r: cls(
            r.string("camera"), r.integer("start_us"), r.integer("end_us"), r.integer("frames", minimum=0),
            r.integer("segments", minimum=0), r.integer("bytes", minimum=0), r.string("content_type")))


@dataclass(frozen=True)
class LockResult:
    event_id: int
    locked: bool

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "locked": self.locked}

    @classmethod
    def from_json(cls, data: object) -> LockResult:
        return read_message(data, "lock_event result", lambda r: cls(r.integer("event_id"), r.boolean("locked")))


@dataclass(frozen=True)
class Revoked:
    """The ``revoked`` result: ids of every revoked token, for relay-only processes."""

    token_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"token_ids": list(self.token_ids)}

    @classmethod
    def from_json(cls, data: object) -> Revoked:
        def read(r: FieldReader) -> Revoked:
            ids = r.data.get("token_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
                raise r.error("token_ids", f"must be an array of token ids, got {ids!r}")
            return cls(tuple(ids))

        return read_message(data, "revoked result", read)
