"""The streamed layout (rows and shapes in, tables loaded only where needed, the head written per chunk) against
the reference layout (every table whole): the same samples in the same order from the same source bytes, the same
keyframes, pieces, gaps and truncation, media times within a tick; and its own invariants (the head read in any
slices is the same bytes, a table that no longer matches its row is refused, only cut segments are loaded)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.playback.boxes import MAX_BOX32
from store.playback.segment_shape import shape_of
from store.playback.segment_tables import SegmentTable, read_table
from store.playback.stream_head import ChunkMismatch, Head
from store.playback.stream_layout import NothingRecorded, Plan, Row, plan
from tests.store.playback import reference_layout as ref
from tests.store.playback.test_layout_properties import TS, capture_us, real_table, segment, stbl_boxes

T0 = 1_700_000_000_000_000


def laid_out(segs: list[tuple[SegmentTable, int]], shaped: list[bool]) -> tuple[list[ref.Source], list[Row]]:
    sources, rows, start = [], [], T0
    for key, ((table, gap), with_shape) in enumerate(zip(segs, shaped, strict=True)):
        sources.append(ref.Source(key, table, start))
        rows.append(Row(start, shape_of(table) if with_shape else None))
        start += int(capture_us(table, 0)[-1]) + (table.last_duration * 1_000_000 + TS // 2) // TS + gap
    return sources, rows


def mdat_map(p: Plan, head: Head) -> list[tuple[int, int, int, int]]:
    """(out_offset, key, src_offset, length) of every run of the mdat, in order."""
    runs = []
    for c, chunk in enumerate(p.chunks):
        at = int(head.chunk_offsets[c])
        for src, length in chunk.spans:
            runs.append((at, chunk.key, src, length))
            at += length
    return runs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), big=st.booleans())
def test_the_streamed_layout_is_the_reference_layout(data: st.DataObject, big: bool) -> None:
    segs = data.draw(st.lists(segment(big), min_size=1, max_size=6))
    shaped = data.draw(st.lists(st.booleans(), min_size=len(segs), max_size=len(segs)))
    sources, rows = laid_out(segs, shaped)
    span = rows[-1].start_us + 3_000_000 - T0
    if data.draw(st.booleans()):  # most of the footage: several chunks, pieces and overlaps
        from_us = T0 + data.draw(st.integers(-1_000_000, 1_000_000))
        to_us = T0 + span - data.draw(st.integers(-1_000_000, 2_000_000))
    else:
        from_us = T0 + data.draw(st.integers(-1_000_000, span))
        to_us = from_us + data.draw(st.integers(1, span + 1_000_000))
    loaded: list[int] = []

    def load(i: int) -> SegmentTable:
        loaded.append(i)
        return sources[i].table

    try:
        want = ref.plan(sources, from_us, to_us)
    except ref.NothingRecorded:
        with pytest.raises(NothingRecorded):
            plan(rows, from_us, to_us, load)
        return
    got = plan(rows, from_us, to_us, load)
    head = Head(got)
    data_bytes = head.read(0, head.size, lambda key: sources[key].table)
    assert len(data_bytes) == head.size
    assert head.total == head.size + sum(c.nbytes for c in got.chunks)
    out = read_table(io.BytesIO(data_bytes), head.total)
    back = read_table(io.BytesIO(want.head), want.total)
    # The same samples, from the same bytes of the same segments.
    assert out.samples == back.samples == got.frames == want.frames
    runs = mdat_map(got, head)
    assert runs[0][0] == head.size and runs[-1][0] + runs[-1][3] == head.total
    starts = np.array([r[0] for r in runs])
    ref_starts = want.run_starts
    for i in range(out.samples):
        k = int(np.searchsorted(starts, out.offsets[i], side="right")) - 1
        at, key, src, _ = runs[k]
        rk = int(np.searchsorted(ref_starts, back.offsets[i], side="right")) - 1
        rrun = want.runs[rk]
        assert (key, src + int(out.offsets[i]) - at) == (rrun.key, rrun.src_offset + int(back.offsets[i]) -
                                                          rrun.out_offset)
        assert out.sizes[i] == back.sizes[i]
    assert out.keyframes.tolist() == back.keyframes.tolist()
    # Media time within a tick of the reference's (both follow capture time); pieces, gaps and truncation equal.
    assert out.timescale == back.timescale == TS
    assert (np.diff(out.dts.astype(np.int64)) > 0).all()
    assert np.abs(out.dts.astype(np.int64) - back.dts.astype(np.int64)).max() <= 2
    assert [(p.start_us, p.end_us, p.frames) for p in got.pieces] == [(p.start_us, p.end_us, p.frames)
                                                                       for p in want.pieces]
    assert all(abs(a.media_s - b.media_s) * TS <= 2 for a, b in zip(got.pieces, want.pieces, strict=True))
    assert got.gaps == want.gaps and got.truncated == want.truncated
    assert abs(got.duration - want.duration) <= 2
    # Tables loaded before the first byte: the first chunk's, and only those that are cut, overlap or lack a shape.
    for i in set(loaded) - {got.chunks[0].key}:
        row = rows[i]
        assert (row.shape is None or row.shape.lead > 0 or not row.shape.contiguous
                or row.start_us + row.shape.last_us >= to_us or any(row.start_us <= c.last_us for c in got.chunks
                                                                     if c.key < i) or i <= got.chunks[0].key)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_head_read_in_slices_is_the_head(data: st.DataObject) -> None:
    segs = data.draw(st.lists(segment(False), min_size=1, max_size=5))
    sources, rows = laid_out(segs, [True] * len(segs))
    try:
        p = plan(rows, T0, rows[-1].start_us + 5_000_000, lambda i: sources[i].table)
    except NothingRecorded:
        return
    head = Head(p)
    whole = head.read(0, head.size, lambda key: sources[key].table)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, head.size), max_size=8))) | {0, head.size})
    pieces = [head.read(a, b - a, lambda key: sources[key].table) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert b"".join(pieces) == whole
    assert head.read(head.size - 1, 100, lambda key: sources[key].table) == whole[-1:]


def test_a_table_that_no_longer_matches_its_row_is_refused() -> None:
    table = real_table()
    rows = [Row(T0, shape_of(table)), Row(T0 + 2_000_000, shape_of(table)), Row(T0 + 4_000_000, shape_of(table))]
    p = plan(rows, T0, T0 + 6_000_000, lambda i: table)
    head = Head(p)
    other = replace(table, sizes=table.sizes + 1)
    with pytest.raises(ChunkMismatch, match="no longer matches its index row"):
        head.read(0, head.size, lambda key: other if key == 1 else table)


def test_only_the_cut_segments_are_read_before_answering() -> None:
    table = real_table()
    n = 500
    rows = [Row(T0 + i * 2_000_000, shape_of(table)) for i in range(n)]
    loaded: list[int] = []
    p = plan(rows, T0 + 500_000, T0 + (n - 1) * 2_000_000 + 700_000, lambda i: loaded.append(i) or table)
    assert loaded == [0, n - 1]
    assert len(p.chunks) == n and len(p.pieces) == 1 and p.gaps == ()
    assert p.chunks[-1].end < table.samples  # the last one is cut at to


def test_a_file_past_four_gibibytes_gets_64_bit_offsets_and_mdat() -> None:
    n = 100
    sizes = np.full(n, 50_000_000, dtype=np.int64)
    table = replace(real_table(), offsets=48 + np.concatenate(([0], np.cumsum(sizes)[:-1])),
                    sizes=sizes.astype(np.uint32), dts=np.arange(n, dtype=np.int64) * 9000, last_duration=9000,
                    keyframes=np.arange(0, n, 10, dtype=np.int64))
    rows = [Row(T0, shape_of(table)), Row(T0 + 10_000_000, shape_of(table))]
    head = Head(plan(rows, T0, T0 + 20_000_000, lambda i: table))
    data = head.read(0, head.size, lambda key: table)
    assert head.total > 2 * 4_999_999_999 and b"co64" in stbl_boxes(data, head.total)
    assert data[-16:-8] == b"\x00\x00\x00\x01mdat"  # largesize
    back = read_table(io.BytesIO(data), head.total)
    assert back.samples == 2 * n and int(back.offsets[-1]) == head.total - 50_000_000
    assert head.total > MAX_BOX32
