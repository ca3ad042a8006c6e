"""Ingest v2: a segment in fragments, judged by its first one and assembled within its declared size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import (
    MAX_FRAGMENT_BYTES,
    IngestReceiver,
    Refusal,
    SegmentAssembly,
    SegmentHeader,
    SegmentStart,
    decode_segment,
    encode_segment,
    fragments,
    parse_segment_start,
    sha256_hex,
)
from tests.shared.test_ingest_protocol import segments


def _header(payload: bytes = b"abc") -> SegmentHeader:
    return SegmentHeader(node="node0", camera="cam0", start_us=10, end_us=20, frames=1, bytes=len(payload),
                         sha256=sha256_hex(payload))


@given(st.binary(max_size=5000), st.integers(1, 700))
def test_fragments_cover_the_message_in_order_without_copies(message, size):
    parts = fragments(message, size)
    assert b"".join(parts) == message
    assert all(len(p) <= size for p in parts) and all(len(p) == size for p in parts[:-1])
    assert all(isinstance(p, memoryview) for p in parts)


def test_a_message_is_cut_into_one_mebibyte_frames_by_default():
    assert [len(p) for p in fragments(bytes(2 * MAX_FRAGMENT_BYTES + 5))] == [MAX_FRAGMENT_BYTES] * 2 + [5]


@given(segments(), st.integers(600, 4000))
def test_a_fragmented_segment_assembles_to_what_decode_segment_reads(seg, size):
    header, payload = seg
    message = encode_segment(header, payload)
    first, *rest = fragments(message, size)
    start = IngestReceiver().segment_start(first, final=not rest)
    assert isinstance(start, SegmentStart) and start.header == header
    assembly = SegmentAssembly(start)
    for part in rest:
        assembly.feed(part)
    received = assembly.complete()
    assert received.header == decode_segment(message)[0]
    assert bytes(received.payload) == payload


@given(st.binary(max_size=300), st.booleans())
def test_any_first_fragment_gives_a_start_or_a_refusal(first, final):
    judged = IngestReceiver().segment_start(first, final)
    assert isinstance(judged, (SegmentStart, Refusal))
    if isinstance(judged, Refusal):
        assert judged.code and judged.message and not judged.retry


def test_garbage_is_refused_from_the_first_fragment():
    receiver = IngestReceiver()
    refusal = receiver.segment_start(bytes(MAX_FRAGMENT_BYTES), final=False)  # a zero-filled flood's first frame
    assert isinstance(refusal, Refusal) and refusal.code == "bad-magic"
    assert receiver.data_to_send() == []  # the caller decides: queue it, or send it with a close


def test_a_first_fragment_must_carry_the_whole_header():
    message = encode_segment(_header(), b"abc")
    refusal = IngestReceiver().segment_start(message[:20], final=False)
    assert isinstance(refusal, Refusal) and refusal.code == "bad-header" and "first fragment" in refusal.message


def test_an_unfragmented_message_must_carry_exactly_the_declared_bytes():
    message = encode_segment(_header(b"abcdef"), b"abcdef")
    assert isinstance(parse_segment_start(message[:-2], final=False), SegmentStart)  # more may follow
    with pytest.raises(ProtocolError, match="carries 4") as short:
        parse_segment_start(message[:-2], final=True)
    assert short.value.code == "size-mismatch"
    with pytest.raises(ProtocolError, match="more than that"):
        parse_segment_start(message + b"x", final=False)


def test_assembly_refuses_a_byte_past_the_declaration_and_a_short_end():
    message = encode_segment(_header(b"abcdef"), b"abcdef")
    assembly = SegmentAssembly(parse_segment_start(message[:-3], final=False))
    with pytest.raises(ProtocolError, match="carries more") as over:
        assembly.feed(b"defg")
    assert over.value.code == "size-mismatch"
    assembly.feed(b"de")
    with pytest.raises(ProtocolError, match="carries 5"):
        assembly.complete()
    assembly.feed(b"f")
    assert bytes(assembly.complete().payload) == b"abcdef"


def test_whole_messages_still_go_through_receive():
    receiver = IngestReceiver()
    assert receiver.receive(bytes(64)) is None
    assert receiver.receive("x" * 70_000) is None
    assert [r.split('"code": ')[1].split('"')[1] for r in receiver.data_to_send()] == ["bad-magic", "too-large"]
