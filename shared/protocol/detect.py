"""The ``/detect`` WebSocket between the store and ``sht detect --store URL`` workers. Sans-I/O.

A worker connects with a ``detector`` token and says ``hello`` (its model, device, labels, input size) as JSON
text. The store then sends one binary message per frame to analyse: a 4-byte big-endian header length, a JSON
header ``{"id", "camera", "capture_us", "min_score"}`` and the frame as JPEG. The worker answers each with a
``result`` (the detections, box = x, y, w, h as fractions of the frame, and the inference milliseconds) or an
``error`` naming why that frame failed. See docs/objects.md.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

from shared.detect.result import Detection
from shared.fields import FieldReader
from shared.ids import check_id
from shared.protocol.errors import ProtocolError, parse_json_object, read_message
from shared.protocol.labels import label_problem

DETECT_PATH = "/detect"
HEADER_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 4 * 1024
MAX_JPEG_BYTES = 4 * 1024 * 1024
MAX_FRAME_MESSAGE_BYTES = HEADER_LENGTH.size + MAX_HEADER_BYTES + MAX_JPEG_BYTES
MAX_TEXT_BYTES = 256 * 1024  # a hello with a few thousand labels, a result with 1000 detections
MAX_DETECTIONS = 1000
MAX_LABELS = 10_000
MAX_INPUT_SIDE = 16_384
MAX_ID = 2**63 - 1
MAX_MESSAGE_CHARS = 1000  # an error message's text; a longer one is cut, not refused


@dataclass(frozen=True, slots=True)
class WorkerHello:
    """What a worker runs: the store shows it in health and knows which labels it can find."""

    model: str
    device: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # the model's input, width x height

    def serialize(self) -> str:
        return json.dumps({"type": "hello", "model": self.model, "device": self.device,
                           "labels": list(self.labels), "input": list(self.input_size)})


@dataclass(frozen=True, slots=True)
class FrameRequest:
    """One frame for a worker to analyse; ``id`` pairs it with its answer."""

    id: int
    camera: str
    capture_us: int
    min_score: float
    jpeg: bytes

    def encode(self) -> bytes:
        """The binary message; ValueError (a bug of the sender, not bad input) for values the worker would refuse."""
        if len(self.jpeg) > MAX_JPEG_BYTES:
            raise ValueError(f"JPEG of {len(self.jpeg)} bytes is over the {MAX_JPEG_BYTES}-byte limit")
        if not 0 <= self.id <= MAX_ID or not 0 <= self.capture_us <= MAX_ID or not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"frame request id {self.id}, capture_us {self.capture_us} or min_score "
                             f"{self.min_score} out of range")
        header = json.dumps({"id": self.id, "camera": check_id(self.camera, "camera id"),
                             "capture_us": self.capture_us, "min_score": self.min_score}).encode()
        return HEADER_LENGTH.pack(len(header)) + header + self.jpeg


def decode_frame_request(message: bytes | bytearray | memoryview) -> FrameRequest:
    """The store's binary frame message; ProtocolError for anything malformed or over the limits."""
    if isinstance(message, str):
        raise ProtocolError("unexpected-text", "a frame request is a binary message")
    if len(message) > MAX_FRAME_MESSAGE_BYTES:
        raise ProtocolError("too-large", f"frame request of {len(message)} bytes is over the "
                            f"{MAX_FRAME_MESSAGE_BYTES}-byte limit (JPEG at most {MAX_JPEG_BYTES})")
    if len(message) < HEADER_LENGTH.size:
        raise ProtocolError("short-frame", f"frame request of {len(message)} bytes has no 4-byte header length")
    (header_len,) = HEADER_LENGTH.unpack_from(message)
    if header_len > MAX_HEADER_BYTES:
        raise ProtocolError("too-large", f"frame request header of {header_len} bytes is over the "
                            f"{MAX_HEADER_BYTES}-byte limit")
    end = HEADER_LENGTH.size + header_len
    if len(message) < end:
        raise ProtocolError("short-frame", f"frame request of {len(message)} bytes ends inside its "
                            f"{header_len}-byte header")
    if len(message) - end > MAX_JPEG_BYTES:
        raise ProtocolError("too-large", f"frame request JPEG of {len(message) - end} bytes is over the "
                            f"{MAX_JPEG_BYTES}-byte limit")
    if len(message) == end:
        raise ProtocolError("bad-frame", "frame request carries no JPEG after its header")
    header = parse_json_object(bytes(message[HEADER_LENGTH.size:end]))
    jpeg = bytes(message[end:])
    return read_message(header, "frame request header", lambda r: FrameRequest(
        r.integer("id", minimum=0, maximum=MAX_ID), r.ident("camera"),
        r.integer("capture_us", minimum=0, maximum=MAX_ID),
        _finite(r.number("min_score", minimum=0.0, maximum=1.0), "min_score", r), jpeg))


@dataclass(frozen=True, slots=True)
class FrameResult:
    id: int
    detections: tuple[Detection, ...]
    ms: float  # the worker's inference time for this frame

    def serialize(self) -> str:
        return json.dumps({"type": "result", "id": self.id, "ms": self.ms, "detections": [
            {"label": d.label, "score": d.score, "box": list(d.box)} for d in self.detections]})


@dataclass(frozen=True, slots=True)
class FrameError:
    """The worker could not analyse this frame (a JPEG it cannot decode, a detector error); it goes on."""

    id: int
    message: str

    def serialize(self) -> str:
        return json.dumps({"type": "error", "id": self.id, "message": self.message[:MAX_MESSAGE_CHARS]})


WorkerMessage = WorkerHello | FrameResult | FrameError


def _finite(value: float, key: str, r: FieldReader) -> float:
    """JSON as Python reads it allows NaN, which passes every range check: refuse it here."""
    if not math.isfinite(value):
        raise r.error(key, f"must be a finite number, got {value!r}")
    return float(value)


def _finite_numbers(r: FieldReader, key: str, count: int, minimum: float, maximum: float) -> list[float]:
    values = r.numbers(key, count, minimum=minimum, maximum=maximum)
    for value in values:
        _finite(value, key, r)
    return values


def _label(r: FieldReader, key: str) -> str:
    value = r.string(key)
    problem = label_problem(value)
    if problem:
        raise r.error(key, problem)
    return str(value)


def _detection(r: FieldReader) -> Detection:
    box = _finite_numbers(r, "box", 4, 0.0, 1.0)
    return Detection(_label(r, "label"), _finite(r.number("score", minimum=0.0, maximum=1.0), "score", r),
                     (box[0], box[1], box[2], box[3]))


def _hello(r: FieldReader) -> WorkerHello:
    labels = r.data.get("labels")
    if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_LABELS:
        raise r.error("labels", f"must be an array of 1 to {MAX_LABELS} labels, got {str(labels)[:80]}")
    for label in labels:
        problem = label_problem(label)
        if problem:
            raise r.error("labels", problem)
    width, height = _finite_numbers(r, "input", 2, 1, MAX_INPUT_SIDE)
    if width != int(width) or height != int(height):
        raise r.error("input", f"must be two whole numbers (width, height), got {[width, height]}")
    return WorkerHello(r.string("model"), r.string("device"), tuple(labels), (int(width), int(height)))


def _result(r: FieldReader) -> FrameResult:
    items = r.children("detections")
    if len(items) > MAX_DETECTIONS:
        raise r.error("detections", f"must hold at most {MAX_DETECTIONS} detections, got {len(items)}")
    ms = _finite(r.number("ms", minimum=0.0), "ms", r)
    return FrameResult(r.integer("id", minimum=0, maximum=MAX_ID), tuple(_detection(d) for d in items), ms)


def parse_worker_message(message: str | bytes) -> WorkerMessage:
    """A worker's text message (hello, result or error); ProtocolError for anything else."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        raise ProtocolError("unexpected-binary", "a detect worker sends JSON text messages only")
    if len(message) > MAX_TEXT_BYTES:
        raise ProtocolError("too-large", f"worker message of {len(message)} characters is over the "
                            f"{MAX_TEXT_BYTES} limit")
    obj = parse_json_object(message)
    kind = obj.get("type")
    if kind == "hello":
        return read_message(obj, "worker hello", _hello)
    if kind == "result":
        return read_message(obj, "detect result", _result)
    if kind == "error":
        return read_message(obj, "detect error", lambda r: FrameError(
            r.integer("id", minimum=0, maximum=MAX_ID), r.string("message", empty=True)[:MAX_MESSAGE_CHARS]))
    raise ProtocolError("unknown-type", f"unknown detect message type {str(kind)[:40]!r}: expected hello, result "
                        "or error")

