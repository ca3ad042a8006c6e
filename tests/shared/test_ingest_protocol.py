import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import (
    MAX_SEGMENT_US,
    Ack,
    EventRecord,
    IngestReceiver,
    IngestSender,
    Refusal,
    SegmentHeader,
    SegmentReceived,
    decode_segment,
    encode_segment,
    parse_reply,
    sha256_hex,
)
from shared.protocol.times import MAX_TIME_US

ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)


@st.composite
def segments(draw):
    payload = draw(st.binary(min_size=1, max_size=256))
    start = draw(st.integers(0, MAX_TIME_US - MAX_SEGMENT_US))  # the store's time range
    header = SegmentHeader(
        node=draw(ids), camera=draw(ids), start_us=start,
        end_us=start + draw(st.integers(1, MAX_SEGMENT_US)), frames=draw(st.integers(1, 10**6)),
        bytes=len(payload), sha256=sha256_hex(payload),
        width=draw(st.integers(0, 8000)), height=draw(st.integers(0, 8000)),
    )
    return header, payload


@given(segments())
def test_segment_round_trip(seg):
    header, payload = seg
    decoded, body = decode_segment(encode_segment(header, payload))
    assert decoded == header
    assert bytes(body) == payload


@given(st.binary(max_size=300))
def test_garbage_segments_give_protocol_errors_only(data):
    try:
        decode_segment(data)
    except ProtocolError as exc:
        assert exc.code


@given(segments(), st.data())
def test_corrupted_header_never_raises_anything_else(seg, data):
    header, payload = seg
    message = bytearray(encode_segment(header, payload))
    i = data.draw(st.integers(0, len(message) - 1))
    message[i] = data.draw(st.integers(0, 255))
    try:
        decode_segment(bytes(message))
    except ProtocolError:
        pass


@given(st.text(max_size=80))
def test_garbage_replies_give_protocol_errors_only(text):
    try:
        parse_reply(text)
    except ProtocolError:
        pass


@pytest.mark.parametrize("reply", [Ack("cam0-1"), Ack("cam0-1", True),
                                   Refusal("disk-full", "no space", "cam0-1", True),
                                   Refusal("bad-json", "nope")])
def test_reply_round_trip(reply):
    assert parse_reply(reply.serialize()) == reply


def _header(**changes):
    payload = b"abc"
    fields = dict(node="node0", camera="cam0", start_us=10, end_us=20, frames=1, bytes=3,
                  sha256=sha256_hex(payload))
    fields.update(changes)
    return SegmentHeader(**fields)


@pytest.mark.parametrize("changes, message", [
    ({"camera": "../etc"}, "camera id"),
    ({"end_us": 5}, "start_us < end_us"),
    ({"frames": 0}, "frames"),
    ({"sha256": "XYZ"}, "sha256"),
    ({"end_us": 10 + MAX_SEGMENT_US + 1}, "clock jump"),
])
def test_invalid_headers_name_the_field(changes, message):
    with pytest.raises(ProtocolError, match=message):
        _header(**changes).validate()


def test_size_mismatch_is_refused():
    message = encode_segment(_header(), b"abc") + b"extra"
    with pytest.raises(ProtocolError) as err:
        decode_segment(message)
    assert err.value.code == "size-mismatch"


def test_wrong_field_type_is_named():
    obj = _header().to_json() | {"frames": "many"}
    head = json.dumps(obj).encode()
    import struct
    with pytest.raises(ProtocolError, match="'frames'"):
        decode_segment(struct.pack(">4sI", b"SHTS", len(head)) + head + b"abc")


def test_sender_and_receiver_talk_to_each_other():
    sender, receiver = IngestSender(), IngestReceiver()
    header = _header()
    sender.send_segment(header, b"abc")
    (message,) = sender.data_to_send()
    event = receiver.receive(message)
    assert isinstance(event, SegmentReceived) and bytes(event.payload) == b"abc"
    receiver.acknowledge(header.segment_id)
    (reply,) = receiver.data_to_send()
    assert sender.receive(reply) == Ack(header.segment_id)
    assert not sender.in_flight
    with pytest.raises(ProtocolError, match="not in flight"):
        sender.receive(reply)


def test_receiver_refuses_text_and_garbage_with_a_reply():
    receiver = IngestReceiver()
    assert receiver.receive("hello") is None
    assert receiver.receive('{"type": "segment"}') is None
    assert receiver.receive(b"nonsense") is None
    replies = [parse_reply(r) for r in receiver.data_to_send()]
    assert [r.code for r in replies] == ["bad-json", "unexpected-text", "bad-magic"]


closed_events = st.builds(
    EventRecord, node=ids, camera=ids, start_us=st.integers(0, 2**52), end_us=st.just(MAX_TIME_US),
    kind=st.sampled_from(["motion", "loss", "camera-stalled"]), score=st.floats(0, 1),
    bbox=st.none() | st.tuples(*[st.floats(0, 1)] * 4), thumb_us=st.none() | st.integers(0, MAX_TIME_US),
    detail=st.text(max_size=50))
# Only a motion event (v3) or a camera stall (v4) can be open: one still going on.
open_events = st.builds(
    EventRecord, node=ids, camera=ids, start_us=st.integers(0, 2**52), end_us=st.just(MAX_TIME_US),
    kind=st.sampled_from(["motion", "camera-stalled"]), score=st.floats(0, 1),
    bbox=st.none() | st.tuples(*[st.floats(0, 1)] * 4),
    thumb_us=st.none() | st.integers(0, MAX_TIME_US), open=st.just(True))
events = closed_events | open_events


@given(events)
def test_event_round_trip_through_sender_and_receiver(record):
    sender, receiver = IngestSender(), IngestReceiver()
    sender.send_event(record)
    (message,) = sender.data_to_send()
    assert receiver.receive(message) == record
    receiver.acknowledge(record.record_id)
    (reply,) = receiver.data_to_send()
    assert sender.receive(reply) == Ack(record.record_id) and not sender.in_flight


@given(st.dictionaries(st.sampled_from(["type", "node", "camera", "start_us", "end_us", "kind", "score", "bbox",
                                        "thumb_us", "detail", "open"]),
                       st.none() | st.integers() | st.floats() | st.text(max_size=8)
                       | st.lists(st.floats(), max_size=5)))
def test_garbage_events_are_refused_with_a_reply(obj):
    receiver = IngestReceiver()
    obj["type"] = "event"
    result = receiver.receive(json.dumps(obj))
    if result is None:
        (reply,) = receiver.data_to_send()
        assert isinstance(parse_reply(reply), Refusal)


def _event_json(**changes: object) -> str:
    obj = {"type": "event", "node": "n0", "camera": "cam0", "start_us": 5, "end_us": 9, "kind": "motion"}
    return json.dumps({**obj, **changes})


def test_open_is_optional_and_false_by_default():
    """A v2 node never says ``open``: its events are closed, as they always were."""
    record = IngestReceiver().receive(_event_json())
    assert isinstance(record, EventRecord) and record.open is False
    assert json.loads(record.serialize())["open"] is False  # always written
    opened = IngestReceiver().receive(_event_json(open=True))
    assert isinstance(opened, EventRecord) and opened.open is True


@pytest.mark.parametrize("changes, message", [
    ({"open": 1}, "'open' must be true or false"),
    ({"open": "yes"}, "'open' must be true or false"),
    ({"open": None}, "'open' must be true or false"),
    ({"open": True, "kind": "loss"}, "only a motion or camera-stalled event can be open"),
    ({"kind": "camera-stall"}, "event kind 'camera-stall' is not one of"),
])
def test_a_bad_open_field_is_refused_naming_it(changes, message):
    receiver = IngestReceiver()
    assert receiver.receive(_event_json(**changes)) is None
    (reply,) = receiver.data_to_send()
    refusal = parse_reply(reply)
    assert isinstance(refusal, Refusal) and refusal.code == "bad-field" and message in refusal.message
