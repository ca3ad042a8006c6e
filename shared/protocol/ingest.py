"""Segment ingest, node → store, as a sans-I/O state machine.

A node sends each finished segment as one binary WebSocket message:

    b"SHTS" | uint32 big-endian header length | header (UTF-8 JSON) | MP4 bytes

An event (motion, or a loss the node had to accept) is one text message,
``{"type": "event", ...}`` (``EventRecord``). Since v3 a motion event is sent when it starts, ``open``,
and again when it ends; the store says in its handshake response (``X-Sht-Ingest: 3``) that it takes
open events, and a node sends them to no older store, which would keep the first as the whole event.
The store answers each with a text message: ``{"type": "ack", ...}`` once the file or row is durable and
indexed, or ``{"type": "error", ...}`` naming what was wrong and whether a
retry can help. Neither side does any I/O here: ``receive`` takes a
whole message and returns typed events; ``data_to_send`` hands out what to write.

A segment travels in WebSocket fragments of at most ``MAX_FRAGMENT_BYTES``
(``fragments``), and the first carries the magic and the whole header. So the
store reads a message incrementally: ``IngestReceiver.segment_start`` judges the
first fragment (garbage is refused before anything else is read), the store
reserves the declared size, and a ``SegmentAssembly`` takes the rest, never
more than the header declared.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from typing import Any

from shared.ids import InvalidId, check_id
from shared.protocol.errors import ProtocolError, parse_json_object
from shared.protocol.times import check_time

MAGIC = b"SHTS"
PREFIX = struct.Struct(">4sI")
MAX_HEADER_BYTES = 16 * 1024
MAX_SEGMENT_BYTES = 256 * 1024 * 1024
# Largest WebSocket frame on /ingest (protocol v2): a node sends bigger messages fragmented. An unfragmented
# message up to this size (any event, a small segment from an older node) is still taken whole.
MAX_FRAGMENT_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 64 * 1024  # an event is a short JSON object (its detail is cut at 500 characters)
# Longest a segment may last: the node's 600 s limit plus a long wait for the next keyframe. The store's
# range queries look back this far, and a longer one (a node clock that jumped mid-segment) is refused.
MAX_SEGMENT_US = 900 * 1_000_000
CODECS = ("h264", "hevc")  # FFmpeg's codec names, as store/ingest/writer.py reads them back from the MP4
# The /ingest protocol version a store speaks, in its handshake response's header INGEST_VERSION_HEADER
# (absent before v3). v2: segments in fragments; v3: open events (EventRecord.open); v4: camera-stalled events.
INGEST_VERSION = 4
INGEST_VERSION_HEADER = "X-Sht-Ingest"
OPEN_EVENTS_VERSION = 3  # the first version that takes open events
STALL_EVENTS_VERSION = 4  # the first that takes camera-stalled events (an older store gets them as a loss)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """What the store needs to index a segment without opening it."""

    node: str
    camera: str
    start_us: int  # capture time of the first frame
    end_us: int  # capture time just past the last frame (last frame + one frame interval)
    frames: int
    bytes: int
    sha256: str
    codec: str = "h264"
    width: int = 0
    height: int = 0

    @property
    def segment_id(self) -> str:
        """Stable across resends: a camera never starts two segments at the same microsecond."""
        return f"{self.camera}-{self.start_us}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "segment", **asdict(self)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SegmentHeader:
        fields: dict[str, Any] = {}
        for name, kind in (("node", str), ("camera", str), ("sha256", str), ("codec", str),
                           ("start_us", int), ("end_us", int), ("frames", int),
                           ("bytes", int), ("width", int), ("height", int)):
            if name not in obj:
                if name in ("codec", "width", "height"):
                    continue
                raise ProtocolError("missing-field", f"segment header lacks field {name!r}")
            value = obj[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ProtocolError(
                    "bad-field", f"segment header field {name!r} must be {kind.__name__}, got {value!r}"
                )
            fields[name] = value
        header = cls(**fields)
        header.validate()
        return header

    def validate(self) -> None:
        _check_ids(self.node, self.camera)
        if self.codec not in CODECS:
            raise ProtocolError("bad-field", f"codec {self.codec!r} is not one of {CODECS}")
        check_time(self.start_us, "start_us", "segment header")
        check_time(self.end_us, "end_us", "segment header")
        if not self.start_us < self.end_us:
            raise ProtocolError(
                "bad-field", f"segment times must satisfy 0 <= start_us < end_us, got "
                f"{self.start_us}..{self.end_us}"
            )
        if self.end_us - self.start_us > MAX_SEGMENT_US:
            raise ProtocolError(
                "bad-field", f"segment lasts {(self.end_us - self.start_us) / 1e6:.0f} s, more than the "
                f"{MAX_SEGMENT_US // 1_000_000} s a segment may last (a clock jump while recording it?)"
            )
        if not 0 < self.frames <= 10_000_000:
            raise ProtocolError("bad-field", f"frames must be positive, got {self.frames}")
        if not 0 < self.bytes <= MAX_SEGMENT_BYTES:
            raise ProtocolError(
                "bad-field", f"bytes must be in 1..{MAX_SEGMENT_BYTES}, got {self.bytes}"
            )
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ProtocolError("bad-field", "sha256 must be 64 lowercase hex digits")
        if not (0 <= self.width <= 16384 and 0 <= self.height <= 16384):
            raise ProtocolError("bad-field", "width and height must be in 0..16384")


def _check_ids(node: str, camera: str) -> None:
    try:
        check_id(node, "node id")
        check_id(camera, "camera id")
    except InvalidId as exc:
        raise ProtocolError("bad-field", str(exc)) from None


def encode_segment(header: SegmentHeader, payload: bytes) -> bytes:
    head = json.dumps(header.to_json(), separators=(",", ":")).encode()
    return PREFIX.pack(MAGIC, len(head)) + head + payload


def fragments(message: bytes, size: int = MAX_FRAGMENT_BYTES) -> list[memoryview]:
    """``message`` cut into WebSocket fragments of at most ``size`` bytes (no copies), for ``send``."""
    view = memoryview(message)
    return [view[i : i + size] for i in range(0, max(len(view), 1), size)]


@dataclass(frozen=True, slots=True)
class SegmentReceived:
    header: SegmentHeader
    payload: memoryview


@dataclass(frozen=True, slots=True)
class SegmentStart:
    """A segment message's first fragment, judged: its header and the payload bytes that came with it."""

    header: SegmentHeader
    head: memoryview  # the payload's first bytes (all of them when the message was not fragmented)


def parse_segment_start(first: bytes, final: bool = True) -> SegmentStart:
    """Read the magic and header from a segment message's first fragment (``final``: it is the whole message).

    Raises ``ProtocolError`` for anything that is not the start of a segment of the size it declares, so
    the store can refuse it before reading the rest.
    """
    if len(first) < PREFIX.size:
        raise ProtocolError("short-message", f"segment message has only {len(first)} bytes")
    magic, head_len = PREFIX.unpack_from(first)
    if magic != MAGIC:
        raise ProtocolError("bad-magic", f"segment message must start with {MAGIC!r}, got {magic!r}")
    if head_len > MAX_HEADER_BYTES:
        raise ProtocolError("bad-header", f"header length {head_len} is over the {MAX_HEADER_BYTES}-byte limit")
    if PREFIX.size + head_len > len(first):
        where = "the message" if final else "the first fragment (it must carry the whole header)"
        raise ProtocolError("bad-header", f"header length {head_len} does not fit {where}")
    obj = parse_json_object(bytes(first[PREFIX.size : PREFIX.size + head_len]))
    if obj.get("type") != "segment":
        raise ProtocolError("unknown-type", f"binary message type {obj.get('type')!r} is not 'segment'")
    header = SegmentHeader.from_json(obj)
    head = memoryview(first)[PREFIX.size + head_len :]
    if len(head) > header.bytes or (final and len(head) != header.bytes):
        raise ProtocolError(
            "size-mismatch", f"header says {header.bytes} bytes, message carries "
            f"{'more than that' if len(head) > header.bytes else len(head)}"
        )
    return SegmentStart(header, head)


def decode_segment(message: bytes) -> tuple[SegmentHeader, memoryview]:
    start = parse_segment_start(message, final=True)
    return start.header, start.head


class SegmentAssembly:
    """One segment's payload arriving in fragments, held in a buffer of exactly the declared size.

    The caller reserves ``header.bytes`` before making one; ``feed`` refuses a byte more than declared.
    """

    def __init__(self, start: SegmentStart) -> None:
        self.header = start.header
        self._buffer = bytearray(start.header.bytes)  # zero pages: memory is used as the bytes arrive
        self._view = memoryview(self._buffer)
        self.received = 0
        self.feed(start.head)

    def feed(self, fragment: bytes | memoryview) -> None:
        end = self.received + len(fragment)
        if end > self.header.bytes:
            raise ProtocolError("size-mismatch", f"header says {self.header.bytes} bytes, message carries more "
                                f"(at least {end}); refused before reading the rest")
        self._view[self.received : end] = fragment
        self.received = end

    def complete(self) -> SegmentReceived:
        """The whole segment, once the message has ended."""
        if self.received != self.header.bytes:
            raise ProtocolError(
                "size-mismatch", f"header says {self.header.bytes} bytes, message carries {self.received}"
            )
        return SegmentReceived(self.header, self._view)


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# motion; loss (footage the node dropped); camera-stalled (a camera that stopped delivering frames: the gap)
EVENT_KINDS = ("motion", "loss", "camera-stalled")
OPEN_KINDS = ("motion", "camera-stalled")  # kinds that can be sent while they go on


@dataclass(frozen=True, slots=True)
class EventRecord:
    """Something that happened on a camera over a span of time."""

    node: str
    camera: str
    start_us: int
    end_us: int
    kind: str  # 'motion', 'loss' (footage the node dropped: spool overflow, failed spooling), 'camera-stalled'
    score: float = 0.0  # peak score 0..1 for motion; 0 for a loss
    bbox: tuple[float, float, float, float] | None = None  # normalised x, y, w, h of all motion
    thumb_us: int | None = None  # representative time for a thumbnail
    detail: str = ""  # human-readable, e.g. why footage was lost
    # True: still going on; end_us is the latest time known and the same (camera, start_us, kind) will come
    # again, open or closed. False: the event is over, for good (an older node sends only these).
    open: bool = False

    @property
    def record_id(self) -> str:
        return f"{self.camera}-{self.kind}-{self.start_us}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["bbox"] = list(self.bbox) if self.bbox is not None else None
        return {"type": "event", **out}

    def serialize(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EventRecord:
        try:
            node, camera, kind, detail = obj["node"], obj["camera"], obj["kind"], obj.get("detail", "")
            start_us, end_us = obj["start_us"], obj["end_us"]
            score, bbox, thumb_us = obj.get("score", 0.0), obj.get("bbox"), obj.get("thumb_us")
            is_open = obj.get("open", False)
        except KeyError as exc:
            raise ProtocolError("missing-field", f"event lacks field {exc.args[0]!r}") from None
        for name, value, kinds in (("node", node, str), ("camera", camera, str), ("kind", kind, str),
                                   ("detail", detail, str), ("start_us", start_us, int), ("end_us", end_us, int),
                                   ("score", score, (int, float))):
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ProtocolError("bad-field", f"event field {name!r} has the wrong type: {value!r}")
        if not isinstance(is_open, bool):
            raise ProtocolError("bad-field", f"event field 'open' must be true or false, got {is_open!r}")
        if thumb_us is not None and (isinstance(thumb_us, bool) or not isinstance(thumb_us, int)):
            raise ProtocolError("bad-field", f"event field 'thumb_us' must be an integer, got {thumb_us!r}")
        box = None
        if bbox is not None:
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in bbox)):
                raise ProtocolError("bad-field", f"event bbox must be 4 numbers in 0..1, got {bbox!r}")
            box = (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))
        record = cls(node, camera, start_us, end_us, kind, float(score), box, thumb_us, detail[:500], is_open)
        record.validate()
        return record

    def validate(self) -> None:
        _check_ids(self.node, self.camera)
        if self.kind not in EVENT_KINDS:
            raise ProtocolError("bad-field", f"event kind {self.kind!r} is not one of {EVENT_KINDS}")
        check_time(self.start_us, "start_us", "event")
        check_time(self.end_us, "end_us", "event")
        if self.thumb_us is not None:
            check_time(self.thumb_us, "thumb_us", "event")
        if not self.start_us <= self.end_us:
            raise ProtocolError("bad-field", f"event times must satisfy 0 <= start_us <= end_us, got "
                                f"{self.start_us}..{self.end_us}")
        if not 0.0 <= self.score <= 1.0:
            raise ProtocolError("bad-field", f"event score must be in 0..1, got {self.score}")
        if self.open and self.kind not in OPEN_KINDS:
            raise ProtocolError("bad-field", f"only a motion or camera-stalled event can be open, not a "
                                f"{self.kind!r} event")


# ---- replies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """The store holds the segment (or event) durably and has indexed it.

    ``segment_id`` is the acknowledged item's id: a segment's ``segment_id`` or an
    event's ``record_id``.
    """

    segment_id: str
    duplicate: bool = False

    def serialize(self) -> str:
        return json.dumps({"type": "ack", "segment_id": self.segment_id, "duplicate": self.duplicate})


@dataclass(frozen=True, slots=True)
class Refusal:
    """The store did not take a segment. ``retry`` says whether sending it again can help."""

    code: str
    message: str
    segment_id: str | None = None
    retry: bool = False

    def serialize(self) -> str:
        return json.dumps({"type": "error", "code": self.code, "message": self.message,
                           "segment_id": self.segment_id, "retry": self.retry})


def parse_reply(text: str | bytes) -> Ack | Refusal:
    obj = parse_json_object(text)
    kind = obj.get("type")
    if kind == "ack":
        sid, dup = obj.get("segment_id"), obj.get("duplicate", False)
        if not isinstance(sid, str) or not isinstance(dup, bool):
            raise ProtocolError("bad-field", f"ack needs string segment_id and bool duplicate: {obj}")
        return Ack(sid, dup)
    if kind == "error":
        code, msg, sid, retry = (obj.get("code"), obj.get("message"),
                                 obj.get("segment_id"), obj.get("retry", False))
        if not (isinstance(code, str) and isinstance(msg, str) and isinstance(retry, bool)
                and (sid is None or isinstance(sid, str))):
            raise ProtocolError("bad-field", f"error reply has fields of the wrong type: {obj}")
        return Refusal(code, msg, sid, retry)
    raise ProtocolError("unknown-type", f"unknown reply type {kind!r}")


# ---- sessions ------------------------------------------------------------------------


class IngestSender:
    """Node side: queues segments and events, matches replies to what is in flight."""

    def __init__(self) -> None:
        self._outgoing: list[bytes | str] = []
        self.in_flight: dict[str, SegmentHeader | EventRecord] = {}

    def send_event(self, record: EventRecord) -> None:
        record.validate()
        self.in_flight[record.record_id] = record
        self._outgoing.append(record.serialize())

    def send_segment(self, header: SegmentHeader, payload: bytes) -> None:
        header.validate()
        if len(payload) != header.bytes:
            raise ValueError(f"payload has {len(payload)} bytes, header says {header.bytes}")
        self.in_flight[header.segment_id] = header
        self._outgoing.append(encode_segment(header, payload))

    def receive(self, message: str | bytes) -> Ack | Refusal:
        if isinstance(message, bytes):
            raise ProtocolError("unexpected-binary", "the store sent a binary message")
        reply = parse_reply(message)
        if reply.segment_id is not None:
            if reply.segment_id not in self.in_flight:
                raise ProtocolError(
                    "unknown-segment", f"reply for {reply.segment_id!r}, which is not in flight"
                )
            del self.in_flight[reply.segment_id]
        return reply

    def data_to_send(self) -> list[bytes | str]:
        out, self._outgoing = self._outgoing, []
        return out


class IngestReceiver:
    """Store side: messages (whole, or a segment's first fragment) in, ``SegmentReceived``, ``SegmentStart``
    or an ``EventRecord`` out, or a ``Refusal`` queued to send back."""

    def __init__(self) -> None:
        self._outgoing: list[str] = []

    def receive(self, message: str | bytes) -> SegmentReceived | EventRecord | None:
        """Return the segment or event, or ``None`` after queueing a refusal for a bad message."""
        if isinstance(message, str):
            return self.event(message)
        start = self.segment_start(message, final=True)
        if isinstance(start, Refusal):
            self.refuse(start)
            return None
        return SegmentReceived(start.header, start.head)

    def event(self, text: str) -> EventRecord | None:
        """A whole text message: the event, or ``None`` after queueing a refusal."""
        try:
            if len(text) > MAX_EVENT_BYTES:
                raise ProtocolError("too-large", f"an event may be at most {MAX_EVENT_BYTES} bytes; "
                                    "send segments as binary messages")
            obj = parse_json_object(text)
            if obj.get("type") != "event":
                raise ProtocolError("unexpected-text", "text messages must be events; send segments as "
                                    "binary messages")
            return EventRecord.from_json(obj)
        except ProtocolError as exc:
            self.refuse(Refusal(exc.code, exc.message))
            return None

    def segment_start(self, first: bytes, final: bool) -> SegmentStart | Refusal:
        """Judge a binary message's first fragment (``final``: the whole message) before the rest is read:
        the segment's start, or the refusal to send (the caller queues it with ``refuse``, or closes)."""
        try:
            return parse_segment_start(first, final)
        except ProtocolError as exc:
            return Refusal(exc.code, exc.message)

    def acknowledge(self, segment_id: str, duplicate: bool = False) -> None:
        self._outgoing.append(Ack(segment_id, duplicate).serialize())

    def refuse(self, refusal: Refusal) -> None:
        self._outgoing.append(refusal.serialize())

    def data_to_send(self) -> list[str]:
        out, self._outgoing = self._outgoing, []
        return out
