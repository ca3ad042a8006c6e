"""The store's query API at ``/api``, as a sans-I/O state machine.

Requests are JSON text messages ``{"id": N, "method": M, "params": {...}}``.
The store answers each with exactly one final message, ``{"id": N, "result": …}``
or ``{"id": N, "error": {"code", "message", "field"}}``, and before it, for
methods that return bytes (thumbnail, snapshot, export), any number of
``{"id": N, "progress": {"done", "total"}}`` text messages and binary chunks
(uint32 big-endian request id, then the data). Every request is validated here,
with an error that names the bad field, before the store sees it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from shared.fields import FieldError, FieldReader
from shared.protocol.errors import ProtocolError, parse_json_object
from shared.protocol.labels import MAX_LABEL_CHARS, is_label
from shared.protocol.times import MAX_TIME_US, read_time

CHUNK_PREFIX = struct.Struct(">I")
MAX_REQUEST_BYTES = 64 * 1024
MAX_ID = 2**32 - 1
MAX_ROW_ID = 2**63 - 1  # SQLite's largest rowid: a bigger event_id would overflow the driver, not miss
MAX_PAGE = 5000  # items in one segments/events/settings_history page
MAX_NOTIFICATIONS = 500  # items in one notifications answer (the store keeps its last 200 ended ones)
MAX_TARGET_CHARS = 64  # a notify target: 'mqtt', 'webhook:<16 hex>'
MAX_LABELS = 64  # labels one events request may filter by (COCO has 80 classes; nobody asks for all)
MAX_EXPORT_US = 24 * 3600 * 1_000_000
BUCKETS = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
# A timeline's buckets are counted before any work starts: minute buckets from 0 to now would be 29 million.
# 2,000 is more than a day of minutes (1,440), a month of hours or five years of days.
MAX_TIMELINE_BUCKETS = 2000
# A timeline's recorded intervals (and so its gaps): past this many, gaps shorter than range / this are closed
# (store/index/timeline.py), so even years of motion-only recording answer in well under a megabyte.
MAX_TIMELINE_INTERVALS = 10_000
# Requests the store works on at once for one /api connection, and for one token over all its connections;
# one more is answered ``busy`` at once (never queued). StoreClient keeps each connection under the first.
MAX_IN_FLIGHT_PER_CONNECTION = 16
MAX_IN_FLIGHT_PER_TOKEN = 32


@dataclass(frozen=True)
class TimeRange:
    from_us: int
    to_us: int

    @classmethod
    def read(cls, r: FieldReader) -> TimeRange:
        from_us, to_us = read_time(r, "from_us"), read_time(r, "to_us")
        if to_us <= from_us:
            raise r.error("to_us", f"must be after from_us ({from_us}), got {to_us}")
        return cls(from_us, to_us)


@dataclass(frozen=True)
class FleetParams:
    @classmethod
    def read(cls, r: FieldReader) -> FleetParams:
        return cls()


@dataclass(frozen=True)
class ListParams:
    """``segments`` and ``events``: by camera(s) and time range, paged by a cursor."""

    range: TimeRange
    cameras: tuple[str, ...] = ()  # empty: every camera
    limit: int = 1000
    after: tuple[int, int] | None = None  # (start_us, row id) of the last item of the previous page
    kind: str | None = None  # events only
    labels: tuple[str, ...] = ()  # events only: those the store's detector gave any of these labels

    @classmethod
    def read(cls, r: FieldReader) -> ListParams:
        after = None
        if r.has("after") and r.data["after"] is not None:
            a, b = r.numbers("after", 2, minimum=0, maximum=MAX_TIME_US)
            after = (int(a), int(b))
        return cls(
            range=TimeRange.read(r),
            cameras=tuple(r.idents("cameras", [])),
            limit=r.integer("limit", 1000, minimum=1, maximum=MAX_PAGE),
            after=after,
            kind=r.string("kind") if r.has("kind") and r.data["kind"] is not None else None,
            labels=_labels(r, "labels"),
        )


def _labels(r: FieldReader, key: str) -> tuple[str, ...]:
    value = r.data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise r.error(key, f"must be an array of at most {MAX_LABELS} labels, got {value!r}")
    for label in value:
        if not is_label(label):
            raise r.error(key, f"a label is 1..{MAX_LABEL_CHARS} printable characters (e.g. person), got {label!r}")
    return tuple(dict.fromkeys(value))  # each once, in the order asked


@dataclass(frozen=True)
class TimelineParams:
    camera: str
    range: TimeRange
    bucket: str = "hour"
    utc_offset_s: int = 0  # buckets start at local midnight/hours for this offset

    @property
    def bucket_count(self) -> int:
        return bucket_count(self.range, BUCKETS[self.bucket], self.utc_offset_s * 1_000_000)

    @classmethod
    def read(cls, r: FieldReader) -> TimelineParams:
        params = cls(r.ident("camera"), TimeRange.read(r), r.choice("bucket", tuple(BUCKETS), "hour"),
                     r.integer("utc_offset_s", 0, minimum=-14 * 3600, maximum=14 * 3600))
        if (n := params.bucket_count) > MAX_TIMELINE_BUCKETS:
            raise r.error("to_us", f"asks for {n} {params.bucket} buckets; a timeline has at most "
                          f"{MAX_TIMELINE_BUCKETS}: ask for a shorter range or a larger bucket")
        return params


def bucket_count(rng: TimeRange, bucket_us: int, offset_us: int = 0) -> int:
    """How many buckets a timeline over ``rng`` has: the first holds ``from_us``, the last ends at or after
    ``to_us`` (as store/index/timeline.py TimelineBuilder lays them out)."""
    first = (rng.from_us + offset_us) // bucket_us * bucket_us - offset_us
    return -(-(rng.to_us - first) // bucket_us)


@dataclass(frozen=True)
class ThumbnailParams:
    camera: str
    at_us: int
    width: int = 320

    @classmethod
    def read(cls, r: FieldReader) -> ThumbnailParams:
        return cls(r.ident("camera"), read_time(r, "at_us"),
                   r.integer("width", 320, minimum=16, maximum=3840))


@dataclass(frozen=True)
class SnapshotParams:
    """``snapshot``: an event's best frame with its labelled object's box, as the store's detector kept it."""

    event: int

    @classmethod
    def read(cls, r: FieldReader) -> SnapshotParams:
        return cls(r.integer("event", minimum=1, maximum=MAX_ROW_ID))


@dataclass(frozen=True)
class ExportParams:
    camera: str
    range: TimeRange

    @classmethod
    def read(cls, r: FieldReader) -> ExportParams:
        rng = TimeRange.read(r)
        if rng.to_us - rng.from_us > MAX_EXPORT_US:
            raise r.error("to_us", "an export may cover at most 24 hours; split it")
        return cls(r.ident("camera"), rng)


@dataclass(frozen=True)
class LockParams:
    event_id: int
    locked: bool

    @classmethod
    def read(cls, r: FieldReader) -> LockParams:
        return cls(r.integer("event_id", minimum=1, maximum=MAX_ROW_ID), r.boolean("locked", True))


@dataclass(frozen=True)
class SettingsParams:
    camera: str | None = None

    @classmethod
    def read(cls, r: FieldReader) -> SettingsParams:
        return cls(r.ident("camera") if r.has("camera") else None)


@dataclass(frozen=True)
class SetSettingParams:
    camera: str | None  # None (or left out): a store-wide setting (shared/settings.py STORE_SETTINGS)
    key: str
    value: Any
    by: str = "api"

    @classmethod
    def read(cls, r: FieldReader) -> SetSettingParams:
        if "value" not in r.data:
            raise r.error("value", "is required (use null to go back to the default)")
        camera = r.ident("camera") if r.data.get("camera") is not None else None
        return cls(camera, r.string("key"), r.data["value"], r.string("by", "api")[:64])


@dataclass(frozen=True)
class HistoryParams:
    camera: str | None = None
    limit: int = 100

    @classmethod
    def read(cls, r: FieldReader) -> HistoryParams:
        return cls(r.ident("camera") if r.has("camera") else None,
                   r.integer("limit", 100, minimum=1, maximum=MAX_PAGE))


@dataclass(frozen=True)
class NotificationsParams:
    target: str | None = None  # one target ('mqtt', 'webhook:<16 hex>', as the answer's targets name them)
    limit: int = 100

    @classmethod
    def read(cls, r: FieldReader) -> NotificationsParams:
        target = r.string("target", None, nullable=True)
        if target is not None and (len(target) > MAX_TARGET_CHARS or not target.isprintable()):
            raise r.error("target", f"must be a notify target such as 'mqtt' or 'webhook:…' (1 to "
                          f"{MAX_TARGET_CHARS} printable characters), got {target[:80]!r}")
        return cls(target, r.integer("limit", 100, minimum=1, maximum=MAX_NOTIFICATIONS))


METHODS: dict[str, Any] = {
    "fleet": FleetParams,
    "revoked": FleetParams,  # no parameters either: the ids of revoked tokens, for relay-only processes
    "segments": ListParams,
    "events": ListParams,
    "timeline": TimelineParams,
    "thumbnail": ThumbnailParams,
    "snapshot": SnapshotParams,
    "export": ExportParams,
    "lock_event": LockParams,
    "settings": SettingsParams,
    "set_setting": SetSettingParams,
    "settings_history": HistoryParams,
    "notifications": NotificationsParams,
}


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: Any


@dataclass(frozen=True)
class Result:
    id: int
    result: Any


@dataclass(frozen=True)
class Failure:
    id: int | None
    code: str
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Progress:
    id: int
    done: int
    total: int


@dataclass(frozen=True)
class Chunk:
    id: int
    data: bytes


def parse_request(message: str | bytes) -> Request:
    """Validate one request; a ``ProtocolError`` says what is wrong (``Failure`` for the reply)."""
    if isinstance(message, bytes):
        raise ProtocolError("unexpected-binary", "requests are JSON text messages")
    if len(message) > MAX_REQUEST_BYTES:
        raise ProtocolError("too-large", f"request of {len(message)} bytes exceeds {MAX_REQUEST_BYTES}")
    obj = parse_json_object(message)
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= MAX_ID:
        raise ProtocolError("bad-id", f"request id must be an integer 0..{MAX_ID}, got {rid!r}")
    method = obj.get("method")
    if not isinstance(method, str) or method not in METHODS:
        raise RequestError(rid, "unknown-method", f"unknown method {method!r}; known: {', '.join(METHODS)}",
                           "method")
    try:
        params = METHODS[method].read(FieldReader(obj.get("params", {}), "params"))
    except FieldError as exc:
        raise RequestError(rid, "bad-param", exc.message, exc.field or "params") from None
    return Request(rid, method, params)


class RequestError(ProtocolError):
    """A request whose id is known, so the error can be addressed to it."""

    def __init__(self, request_id: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(code, message, field)
        self.request_id = request_id


def chunk_message(request_id: int, data: bytes | memoryview) -> bytes:
    return CHUNK_PREFIX.pack(request_id) + bytes(data)


class QueryServer:
    """Store side: messages in, validated ``Request``s out; replies queued for sending."""

    def __init__(self) -> None:
        self._outgoing: list[str | bytes] = []

    def receive(self, message: str | bytes) -> Request | None:
        try:
            return parse_request(message)
        except RequestError as exc:
            self.error(exc.request_id, exc.code, exc.message, exc.field)
        except ProtocolError as exc:
            self.error(None, exc.code, exc.message)
        return None

    def result(self, request_id: int, result: Any) -> None:
        self._outgoing.append(json.dumps({"id": request_id, "result": result}))

    def error(self, request_id: int | None, code: str, message: str, field_name: str | None = None) -> None:
        self._outgoing.append(json.dumps(
            {"id": request_id, "error": {"code": code, "message": message, "field": field_name}}))

    def progress(self, request_id: int, done: int, total: int) -> None:
        self._outgoing.append(json.dumps({"id": request_id, "progress": {"done": done, "total": total}}))

    def chunk(self, request_id: int, data: bytes | memoryview) -> None:
        self._outgoing.append(chunk_message(request_id, data))

    def data_to_send(self) -> list[str | bytes]:
        out, self._outgoing = self._outgoing, []
        return out


@dataclass
class QueryClient:
    """Client side: build requests, turn replies into ``Result``/``Failure``/``Progress``/``Chunk``."""

    next_id: int = 1
    pending: set[int] = field(default_factory=set)
    _outgoing: list[str] = field(default_factory=list)

    def request(self, method: str, **params: Any) -> int:
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        rid, self.next_id = self.next_id, self.next_id + 1
        self.pending.add(rid)
        self._outgoing.append(json.dumps({"id": rid, "method": method, "params": params}))
        return rid

    def receive(self, message: str | bytes) -> Result | Failure | Progress | Chunk:
        if isinstance(message, bytes):
            if len(message) < CHUNK_PREFIX.size:
                raise ProtocolError("short-chunk", "binary reply shorter than its 4-byte request id")
            (rid,) = CHUNK_PREFIX.unpack_from(message)
            self._check_pending(rid)
            return Chunk(rid, message[CHUNK_PREFIX.size:])
        obj = parse_json_object(message)
        rid = obj.get("id")
        if "error" in obj:
            err = obj["error"]
            if not isinstance(err, dict) or not isinstance(err.get("code"), str):
                raise ProtocolError("bad-reply", f"malformed error reply: {obj}")
            if isinstance(rid, int):
                self.pending.discard(rid)
            return Failure(rid if isinstance(rid, int) else None, err["code"], str(err.get("message", "")),
                           err.get("field") if isinstance(err.get("field"), str) else None)
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise ProtocolError("bad-reply", f"reply without a request id: {obj}")
        self._check_pending(rid)
        if "result" in obj:
            self.pending.discard(rid)
            return Result(rid, obj["result"])
        prog = obj.get("progress")
        if isinstance(prog, dict) and all(isinstance(prog.get(k), int) for k in ("done", "total")):
            return Progress(rid, prog["done"], prog["total"])
        raise ProtocolError("bad-reply", f"reply is neither result, error nor progress: {obj}")

    def _check_pending(self, rid: int) -> None:
        if rid not in self.pending:
            raise ProtocolError("unknown-request", f"reply for request {rid}, which is not pending")

    def data_to_send(self) -> list[str]:
        out, self._outgoing = self._outgoing, []
        return out
