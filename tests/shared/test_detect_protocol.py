"""The /detect protocol: hello, frame requests, results and errors; round trips, limits, garbage."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.detect.result import Detection
from shared.protocol.detect import (
    MAX_HEADER_BYTES,
    MAX_JPEG_BYTES,
    FrameError,
    FrameRequest,
    FrameResult,
    WorkerHello,
    decode_frame_request,
    parse_worker_message,
)
from shared.protocol.errors import ProtocolError

JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


def test_hello_round_trip():
    hello = WorkerHello("person-ssdlite.onnx", "cuda", ("person", "traffic light"), (300, 300))
    assert parse_worker_message(hello.serialize()) == hello
    assert json.loads(hello.serialize())["input"] == [300, 300]


def test_frame_request_round_trip_and_layout():
    request = FrameRequest(7, "cam0", 1_700_000_000_000_000, 0.5, JPEG)
    message = request.encode()
    (header_len,) = struct.unpack(">I", message[:4])
    assert json.loads(message[4:4 + header_len]) == {"id": 7, "camera": "cam0", "capture_us": 1_700_000_000_000_000,
                                                      "min_score": 0.5}
    assert message[4 + header_len:] == JPEG
    assert decode_frame_request(message) == request
    assert decode_frame_request(memoryview(message)) == request


def test_result_and_error_round_trip():
    result = FrameResult(3, (Detection("person", 0.91, (0.1, 0.2, 0.3, 0.4)), Detection("car", 0.5, (0, 0, 1, 1))),
                         8.75)
    assert parse_worker_message(result.serialize()) == result
    assert parse_worker_message(FrameResult(4, (), 1.0).serialize()) == FrameResult(4, (), 1.0)
    assert parse_worker_message(FrameError(3, "cannot decode JPEG").serialize()) == FrameError(3, "cannot decode JPEG")


def test_sender_refuses_what_the_receiver_would():
    with pytest.raises(ValueError, match="over the"):
        FrameRequest(1, "cam0", 0, 0.5, b"x" * (MAX_JPEG_BYTES + 1)).encode()
    with pytest.raises(ValueError):
        FrameRequest(1, "Bad Camera", 0, 0.5, JPEG).encode()
    with pytest.raises(ValueError):
        FrameRequest(-1, "cam0", 0, 0.5, JPEG).encode()


def frame(header: dict | bytes, jpeg: bytes = JPEG) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw + jpeg


GOOD_HEADER = {"id": 1, "camera": "cam0", "capture_us": 5, "min_score": 0.5}


@pytest.mark.parametrize(("message", "code"), [
    (b"", "short-frame"),
    (b"\x00\x00", "short-frame"),
    (struct.pack(">I", 100) + b"{}", "short-frame"),
    (struct.pack(">I", MAX_HEADER_BYTES + 1) + b"x" * 10, "too-large"),
    (frame({**GOOD_HEADER, "pad": "x" * MAX_HEADER_BYTES}), "too-large"),
    (frame(GOOD_HEADER, b"x" * (MAX_JPEG_BYTES + 1)), "too-large"),
    (frame(GOOD_HEADER, b""), "bad-frame"),
    (frame(b"not json"), "bad-json"),
    (frame(b"[1, 2]"), "bad-json"),
    (frame({**GOOD_HEADER, "id": -1}), "bad-field"),
    (frame({**GOOD_HEADER, "id": 2**63}), "bad-field"),
    (frame({**GOOD_HEADER, "camera": "../etc"}), "bad-field"),
    (frame({**GOOD_HEADER, "min_score": 1.5}), "bad-field"),
    (frame(b'{"id": 1, "camera": "cam0", "capture_us": 5, "min_score": NaN}'), "bad-field"),
    (frame({k: v for k, v in GOOD_HEADER.items() if k != "capture_us"}), "bad-field"),
], ids=lambda v: v if isinstance(v, str) else "message")
def test_bad_frame_requests(message, code):
    with pytest.raises(ProtocolError) as info:
        decode_frame_request(message)
    assert info.value.code == code


def test_frame_request_must_be_binary():
    with pytest.raises(ProtocolError, match="binary"):
        decode_frame_request("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(("message", "code"), [
    (b'{"type": "hello"}', "unexpected-binary"),
    ("[]", "bad-json"),
    ('{"type": "bye"}', "unknown-type"),
    ('{"type": "hello", "model": "m", "device": "cpu", "labels": [], "input": [300, 300]}', "bad-field"),
    ('{"type": "hello", "model": "m", "device": "cpu", "labels": ["a\\nb"], "input": [300, 300]}', "bad-field"),
    ('{"type": "hello", "model": "m", "device": "cpu", "labels": ["' + "x" * 65 + '"], "input": [300, 300]}',
     "bad-field"),
    ('{"type": "hello", "model": "m", "device": "cpu", "labels": ["person"], "input": [300.5, 300]}', "bad-field"),
    ('{"type": "hello", "model": "m", "device": "cpu", "labels": ["person"], "input": [NaN, 300]}', "bad-field"),
    ('{"type": "hello", "model": "m", "device": "cpu", "labels": ["person"], "input": [0, 300]}', "bad-field"),
    ('{"type": "hello", "model": "", "device": "cpu", "labels": ["person"], "input": [300, 300]}', "bad-field"),
    ('{"type": "result", "id": 1, "ms": 1, "detections": [{"label": "person", "score": 1.2, "box": [0, 0, 1, 1]}]}',
     "bad-field"),
    ('{"type": "result", "id": 1, "ms": 1, "detections": [{"label": "person", "score": 0.9, "box": [0, 0, 1]}]}',
     "bad-field"),
    ('{"type": "result", "id": 1, "ms": 1, "detections": [{"label": "person", "score": 0.9, "box": [0, 0, 1, NaN]}]}',
     "bad-field"),
    ('{"type": "result", "id": 1, "ms": Infinity, "detections": []}', "bad-field"),
    ('{"type": "result", "id": 1, "ms": 1, "detections": {}}', "bad-field"),
    ('{"type": "result", "id": true, "ms": 1, "detections": []}', "bad-field"),
    ('{"type": "error", "id": 1}', "bad-field"),
    ("x" * (300 * 1024), "too-large"),
], ids=lambda v: v[:60] if isinstance(v, str) else "bytes")
def test_bad_worker_messages(message, code):
    with pytest.raises(ProtocolError) as info:
        parse_worker_message(message)
    assert info.value.code == code


def test_too_many_detections_refused():
    item = {"label": "person", "score": 0.9, "box": [0, 0, 1, 1]}
    with pytest.raises(ProtocolError, match="at most 1000"):
        parse_worker_message(json.dumps({"type": "result", "id": 1, "ms": 1, "detections": [item] * 1001}))


def test_long_error_message_is_cut_not_refused():
    parsed = parse_worker_message(json.dumps({"type": "error", "id": 1, "message": "x" * 5000}))
    assert isinstance(parsed, FrameError) and len(parsed.message) == 1000


# --- properties ------------------------------------------------------------------------------------------------

labels = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), min_size=1, max_size=64).filter(
    str.isprintable)
unit = st.floats(0.0, 1.0)
detections = st.builds(Detection, labels, unit, st.tuples(unit, unit, unit, unit))
camera_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)


@given(st.integers(0, 2**63 - 1), camera_ids, st.integers(0, 2**63 - 1), unit, st.binary(min_size=1, max_size=2000))
def test_frame_request_round_trips(request_id, camera, capture_us, min_score, jpeg):
    request = FrameRequest(request_id, camera, capture_us, min_score, jpeg)
    assert decode_frame_request(request.encode()) == request


@given(st.integers(0, 2**63 - 1), st.lists(detections, max_size=20), st.floats(0, 1e6))
def test_result_round_trips(request_id, found, ms):
    result = FrameResult(request_id, tuple(found), ms)
    assert parse_worker_message(result.serialize()) == result


@given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=20), st.lists(labels, min_size=1, max_size=20),
       st.tuples(st.integers(1, 16384), st.integers(1, 16384)))
def test_hello_round_trips(model, device, names, size):
    hello = WorkerHello(model, device, tuple(names), size)
    assert parse_worker_message(hello.serialize()) == hello


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_frames_raise_only_protocol_error(message):
    try:
        decode_frame_request(message)
    except ProtocolError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
message_like = st.fixed_dictionaries({"type": st.sampled_from(["hello", "result", "error", "x"])},
                                     optional={"id": json_values, "ms": json_values, "detections": json_values,
                                               "model": json_values, "device": json_values, "labels": json_values,
                                               "input": json_values, "message": json_values})


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=200), message_like.map(json.dumps)))
def test_garbage_worker_messages_raise_only_protocol_error(text):
    try:
        parse_worker_message(text)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["id", "camera", "capture_us", "min_score", "x"]), json_values),
       st.binary(max_size=20))
def test_garbage_headers_raise_only_protocol_error(header, jpeg):
    try:
        decode_frame_request(frame(header, jpeg))
    except ProtocolError:
        pass
