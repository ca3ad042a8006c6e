"""Property tests of the pure parts of playback: the Range header parser, and the MP4 layout (random sample tables
in; the file's own sample table, read back from the head it wrote, must point every sample at the source bytes it
came from, and the runs must tile the file exactly)."""

from __future__ import annotations

import io
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.playback.boxes import MAX_BOX32, children, top_level
from store.playback.ranges import Unsatisfiable, byte_range
from store.playback.segment_tables import SegmentTable, read_table
from tests.store.footage import one_segment
from tests.store.playback.reference_layout import GAP_US, NothingRecorded, Source, plan

TS = 90_000


# --- Range --------------------------------------------------------------------------------------------------------

@given(total=st.integers(0, 10**12), a=st.integers(0, 10**12), b=st.integers(0, 10**12), form=st.integers(0, 2))
def test_a_range_is_inside_the_body_or_unsatisfiable(total: int, a: int, b: int, form: int) -> None:
    header = [f"bytes={a}-{b}", f"bytes={a}-", f"bytes=-{b}"][form]
    try:
        got = byte_range(header, total)
    except Unsatisfiable:
        assert (form < 2 and a >= total and not (form == 0 and b < a)) or (form == 2 and (b == 0 or total == 0))
        return
    if got is None:
        assert form == 0 and b < a  # invalid, ignored: the whole body
        return
    first, last = got
    assert 0 <= first <= last < total
    if form == 0:
        assert (first, last) == (a, min(b, total - 1))
    elif form == 1:
        assert (first, last) == (a, total - 1)
    else:
        assert (first, last) == (max(0, total - b), total - 1)


@given(st.text(max_size=40))
def test_any_header_parses_or_is_ignored(header: str) -> None:
    try:
        got = byte_range(header, 1000)
    except Unsatisfiable:
        return
    assert got is None or 0 <= got[0] <= got[1] < 1000


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=", "bytes=-", "bytes=a-b", "bytes 0-5"])
def test_what_is_not_one_byte_range_means_the_whole_body(header: str) -> None:
    assert byte_range(header, 100) is None


# --- layout -------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def real_table() -> SegmentTable:
    _, data = one_segment()
    return read_table(io.BytesIO(data), len(data))


@st.composite
def segment(draw: st.DrawFn, big: bool) -> tuple[SegmentTable, int]:
    """A random table (its gap before this segment, µs, second): sizes, chunks, times, keyframes."""
    n = draw(st.integers(1, 30))
    sizes = np.array(draw(st.lists(st.integers(1, 60_000_000 if big else 5000), min_size=n, max_size=n)),
                     dtype=np.int64)
    deltas = np.array(draw(st.lists(st.integers(900, 18_000), min_size=n, max_size=n)), dtype=np.int64)
    keys = sorted({0, *draw(st.lists(st.integers(0, n - 1), max_size=n))})
    if draw(st.booleans()) and n > 1:
        keys = keys[1:] or [n - 1]  # a segment not starting on a keyframe (never made by a node; handled anyway)
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=5)))) if n > 1 else []
    offsets = np.empty(n, dtype=np.int64)
    at = 48
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        at += draw(st.integers(0, 100))  # chunks need not touch
        offsets[a:b] = at + np.concatenate(([0], np.cumsum(sizes[a:b])[:-1]))
        at += int(sizes[a:b].sum())
    table = replace(real_table(), offsets=offsets, sizes=sizes.astype(np.uint32), dts=np.concatenate(
        ([0], np.cumsum(deltas[:-1]))), last_duration=int(deltas[-1]), keyframes=np.array(keys, dtype=np.int64))
    if draw(st.integers(0, 9)) == 0:
        table = replace(table, stsd=table.stsd[:49] + b"\x01" + table.stsd[50:])  # another width
    gap_us = draw(st.sampled_from([0, 0, 0, 100_000, GAP_US + 1, 5_000_000, -300_000]))
    return table, gap_us


def stbl_boxes(head: bytes, total: int) -> set[bytes]:
    at = {kind: (offset, header, size) for kind, offset, header, size in top_level(io.BytesIO(head), total)}
    assert list(at) == [b"ftyp", b"moov", b"mdat"]  # moov before mdat
    offset, header, size = at[b"moov"]
    found = children(head[offset + header:offset + size])
    for kind in (b"trak", b"mdia", b"minf", b"stbl"):
        found = children(found[kind][0])
    return set(found)


def capture_us(t: SegmentTable, start: int) -> np.ndarray:
    return start + (t.dts * 1_000_000 + TS // 2) // TS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), big=st.booleans())
def test_the_layout_points_every_sample_at_its_source_bytes(data: st.DataObject, big: bool) -> None:
    segs = data.draw(st.lists(segment(big), min_size=1, max_size=6))
    sources, start = [], 1_700_000_000_000_000
    for key, (table, gap) in enumerate(segs):
        sources.append(Source(key, table, start))
        start += int(capture_us(table, 0)[-1]) + (table.last_duration * 1_000_000 + TS // 2) // TS + gap
    span = start - sources[0].start_us
    from_us = sources[0].start_us + data.draw(st.integers(-1_000_000, span))
    to_us = from_us + data.draw(st.integers(1, span + 1_000_000))
    try:
        layout = plan(sources, from_us, to_us)
    except NothingRecorded:
        return
    # The runs tile the mdat's payload, after the head, up to the total.
    assert layout.runs[0].out_offset == len(layout.head)
    for a, b in zip(layout.runs, layout.runs[1:], strict=False):
        assert b.out_offset == a.out_offset + a.length
    assert layout.runs[-1].out_offset + layout.runs[-1].length == layout.total
    # Read the file's own table back from its head (co64 / largesize where a file passes 4 GiB).
    out = read_table(io.BytesIO(layout.head), layout.total)
    assert out.samples == layout.frames == sum(p.frames for p in layout.pieces)
    assert (layout.total > MAX_BOX32) == (b"co64" in stbl_boxes(layout.head, layout.total))
    starts = layout.run_starts
    by_source = {s.key: s for s in sources}
    mapped = []  # (source key, sample index) of each output sample
    for i in range(out.samples):
        k = int(np.searchsorted(starts, out.offsets[i], side="right")) - 1
        run = layout.runs[k]
        assert out.offsets[i] + out.sizes[i] <= run.out_offset + run.length
        src = run.src_offset + int(out.offsets[i]) - run.out_offset
        table = by_source[run.key].table
        j = int(np.searchsorted(table.offsets, src))
        assert table.offsets[j] == src and table.sizes[j] == out.sizes[i]
        mapped.append((run.key, j))
    keyset = set(out.keyframes.tolist())
    captures = []
    for i, (key, j) in enumerate(mapped):
        s = by_source[key]
        assert (i in keyset) == (j in set(s.table.keyframes.tolist()))
        captures.append(int(capture_us(s.table, s.start_us)[j]))
    assert 0 in keyset
    assert all(a < b for a, b in zip(captures, captures[1:], strict=False))
    assert captures[-1] < to_us
    # Media time maps back to capture time through the pieces, and the gaps lie between them.
    media = out.dts
    assert (np.diff(media) > 0).all() and out.timescale == TS
    piece_of = np.searchsorted([round(p.media_s * TS) for p in layout.pieces], media, side="right") - 1
    for i, p in enumerate(piece_of):
        piece = layout.pieces[p]
        assert abs(piece.start_us + (media[i] / TS - piece.media_s) * 1e6 - captures[i]) <= 12
    for (a, b), before, after in zip(layout.gaps, layout.pieces[:-1], layout.pieces[1:], strict=True):
        assert before.end_us == a and after.start_us == b and b - a > 0
    # Without overlaps or a change of stsd, nothing between the first frame and to_us is left out.
    if all(gap >= 0 for _, gap in segs) and layout.truncated is None:
        # (a segment not starting on a keyframe gives its frames from its first keyframe on: none decode before)
        expected = sum(int(((capture_us(s.table, s.start_us) >= captures[0]) &
                            (capture_us(s.table, s.start_us) < to_us))[s.table.keyframes[0]:].sum()) for s in sources)
        assert len(captures) == expected


def test_a_file_past_four_gibibytes_gets_64_bit_offsets_and_mdat() -> None:
    n = 100
    sizes = np.full(n, 50_000_000, dtype=np.int64)
    table = replace(real_table(), offsets=48 + np.concatenate(([0], np.cumsum(sizes)[:-1])),
                    sizes=sizes.astype(np.uint32), dts=np.arange(n, dtype=np.int64) * 9000, last_duration=9000,
                    keyframes=np.arange(0, n, 10, dtype=np.int64))
    start = 1_700_000_000_000_000
    layout = plan([Source(0, table, start), Source(1, table, start + 10_000_000)], start, start + 20_000_000)
    assert layout.total > 2 * 4_999_999_999 and b"co64" in stbl_boxes(layout.head, layout.total)
    assert layout.head[-16:-8] == b"\x00\x00\x00\x01mdat"  # largesize
    back = read_table(io.BytesIO(layout.head), layout.total)
    assert back.samples == 2 * n and int(back.offsets[-1]) == layout.total - 50_000_000
    assert back.offsets[n] == layout.runs[1].out_offset


def test_segments_differ_by_codec_size_or_parameter_sets_not_by_bit_rate() -> None:
    stsd = real_table().stsd
    at = stsd.index(b"btrt") + 4
    other_rate = stsd[:at] + bytes(4) + stsd[at + 4:]
    other_width = stsd[:49] + bytes([stsd[49] ^ 1]) + stsd[50:]
    sps = stsd.index(b"avcC") + 14
    other_sps = stsd[:sps] + bytes([stsd[sps] ^ 1]) + stsd[sps + 1:]
    key = replace(real_table(), stsd=stsd).codec_key
    assert replace(real_table(), stsd=other_rate).codec_key == key
    assert replace(real_table(), stsd=other_width).codec_key != key
    assert replace(real_table(), stsd=other_sps).codec_key != key
