import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.errors import ProtocolError
from shared.protocol.live import (
    FRAME_HEADER,
    LiveFrame,
    LiveInit,
    LiveReceiver,
    LiveStatus,
    decode_frame,
    encode_frame,
    parse_live_text,
)


@given(st.integers(0, 2**63 - 1), st.booleans(), st.binary(max_size=512))
def test_frame_round_trip(capture_us, keyframe, payload):
    frame = decode_frame(encode_frame(capture_us, keyframe, payload))
    assert frame == LiveFrame(capture_us, keyframe, payload)


def test_frame_header_is_12_bytes_big_endian():
    message = encode_frame(0x0102030405060708, True, b"\x00\x00\x00\x01")
    assert FRAME_HEADER.size == 12
    assert message[:12] == bytes.fromhex("0102030405060708 00000001")


@given(st.binary(max_size=64))
def test_garbage_frames_give_protocol_errors_only(data):
    try:
        decode_frame(data)
    except ProtocolError as exc:
        assert exc.code and exc.message


@given(st.text(max_size=64) | st.binary(max_size=64))
def test_garbage_text_gives_protocol_errors_only(data):
    try:
        parse_live_text(data)
    except ProtocolError:
        pass


@given(st.text(min_size=1, max_size=8), st.integers(16, 8000), st.integers(16, 8000),
       st.floats(1, 120))
def test_init_round_trip(camera, width, height, fps):
    init = LiveInit(camera, "h264", width, height, fps)
    assert parse_live_text(init.serialize()) == init


def test_status_round_trip():
    status = LiveStatus("cam0", "down", "source failed")
    assert parse_live_text(status.serialize()) == status


def test_init_with_wrong_types_is_refused():
    with pytest.raises(ProtocolError, match="wrong type"):
        parse_live_text(json.dumps({"type": "init", "camera": "c", "codec": "h264",
                                    "width": "640", "height": 480, "fps": 15}))


def test_receiver_requires_init_then_keyframe():
    rx = LiveReceiver()
    with pytest.raises(ProtocolError, match="before the init"):
        rx.receive(encode_frame(1, True, b"x"))
    rx.receive(LiveInit("cam0", "h264", 640, 480, 15).serialize())
    with pytest.raises(ProtocolError, match="not a keyframe"):
        rx.receive(encode_frame(1, False, b"x"))
    assert rx.receive(encode_frame(2, True, b"k")).keyframe
    assert not rx.receive(encode_frame(3, False, b"p")).keyframe
