"""The reference layout: one seekable MP4 of a time range, laid out from every segment's whole sample table.

This was the store's layout until the store learned to lay a file out from its index rows
(store/playback/stream_layout.py, whose time to first byte does not grow with the range). It is kept here, with
its own property tests, as the oracle the streamed layout is checked against (test_stream_layout.py): the same
samples, keyframes, pieces and gaps, media times within a tick.

Pure: sample tables and segment start times in, the file's head (``ftyp``, ``moov``, ``mdat`` header) and a map
of where each byte of its ``mdat`` comes from out.

What the file is:

- It starts on the keyframe at or before ``from_us`` (the last one at or before the frame showing at ``from_us``)
  and ends with the last frame captured before ``to_us``.
- Media time runs without gaps. Consecutive frames further apart than ``GAP_US`` beyond the earlier's duration
  start a new **piece**; the time between is a **gap**, left out. Inside a piece, media time follows capture time
  exactly (a segment's last frame lasts until the next segment's first): capture = piece.start_us + (media −
  piece.media). A segment starting before the last frame taken is skipped up to its first keyframe after it.
- One sample description (the first segment's ``stsd``): a segment whose codec, size or parameter sets differ
  (``SegmentTable.codec_key``: another resolution or encoder settings) ends the file before it, and ``truncated``
  says why.

Invariants (tests/store/playback check them): ``head`` is ``total - data_bytes`` long; the runs tile the ``mdat``
payload exactly: ``runs[0].out_offset == len(head)``, each run starts where the last ended, and the last ends at
``total``; each chunk offset in the ``moov`` is a run's ``out_offset`` and the samples of that chunk are that run's
bytes, in order; ``moov`` comes before ``mdat``; 64-bit ``co64``/``largesize``/version 1 boxes exactly where the
values do not fit 32 bits.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from store.playback.boxes import MAX_BOX32, full_box, full_nest, mdat_header, nest
from store.playback.segment_tables import SegmentTable

GAP_US = 250_000  # as the timeline's coverage merges (docs/storage.md R5): a dropped frame or two is no gap
MOVIE_TIMESCALE = 1000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


class NothingRecorded(ValueError):
    """No frame of the segments falls in the range."""


@dataclass(frozen=True)
class Source:
    """A segment: ``key`` names it to whoever reads its bytes; its table; its start (its pts 0) in µs."""

    key: int
    table: SegmentTable
    start_us: int


@dataclass(frozen=True)
class Run:
    """Bytes ``[out_offset, out_offset + length)`` of the file are ``[src_offset, ...)`` of segment ``key``."""

    out_offset: int
    key: int
    src_offset: int
    length: int


@dataclass(frozen=True)
class Piece:
    media_s: float  # where the piece starts in the file's media time
    start_us: int  # capture time of its first frame
    end_us: int  # capture time just past its last frame
    frames: int


@dataclass(frozen=True)
class Layout:
    head: bytes
    runs: tuple[Run, ...]
    total: int
    timescale: int
    duration: int  # media units
    frames: int
    pieces: tuple[Piece, ...]
    gaps: tuple[tuple[int, int], ...]  # (start_us, end_us) of each gap between pieces
    truncated: str | None

    @property
    def start_us(self) -> int:
        return self.pieces[0].start_us

    @property
    def run_starts(self) -> np.ndarray:
        return np.fromiter((r.out_offset for r in self.runs), dtype=np.int64, count=len(self.runs))


@dataclass
class _Samples:
    """Every sample of every source, concatenated (the vectors ``select`` and ``plan`` work on)."""

    capture: np.ndarray  # µs, int64
    duration: np.ndarray  # µs, until the next frame of its segment (the last: its own duration)
    source: np.ndarray  # which source (index into the list), per sample
    key: np.ndarray  # bool
    base: np.ndarray  # each source's first sample
    end_us: np.ndarray  # each source's end: its last sample's capture time plus that sample's duration


def _samples(sources: Sequence[Source]) -> _Samples:
    lens = np.fromiter((s.table.samples for s in sources), dtype=np.int64, count=len(sources))
    base = np.concatenate(([0], np.cumsum(lens)[:-1]))
    ts = np.fromiter((s.table.timescale for s in sources), dtype=np.int64, count=len(sources))
    starts = np.fromiter((s.start_us for s in sources), dtype=np.int64, count=len(sources))
    last = np.fromiter((int(s.table.dts[-1]) + s.table.last_duration for s in sources), dtype=np.int64,
                       count=len(sources))
    which = np.repeat(np.arange(len(sources)), lens)
    dts = np.concatenate([s.table.dts for s in sources]).astype(np.int64)
    capture = starts[which] + (dts * 1_000_000 + ts[which] // 2) // ts[which]
    end_us = starts + (last * 1_000_000 + ts // 2) // ts
    duration = np.empty_like(capture)
    duration[:-1] = capture[1:] - capture[:-1]
    ends = base + lens - 1
    duration[ends] = end_us - capture[ends]
    key = np.zeros(len(capture), dtype=bool)
    key[np.concatenate([s.table.keyframes.astype(np.int64) + b for s, b in zip(sources, base, strict=True)])] = True
    return _Samples(capture, duration, which, key, base, end_us)


def select(sources: Sequence[Source], from_us: int, to_us: int) -> tuple[_Samples, list[tuple[int, int]],
                                                                          str | None]:
    """The samples (all of them), the ``[first, end)`` ranges of them the file takes (in order), and why the file
    stops early, if it does. Vectors for the work per sample; a loop over segments with plain numbers only."""
    every = _samples(sources)
    capture, n = every.capture, len(every.capture)
    lens = np.diff(np.append(every.base, n))
    before_to = np.add.reduceat((capture < to_us).astype(np.int64), every.base)  # per source: increasing inside
    still_on = np.add.reduceat((capture + every.duration > from_us).astype(np.int64), every.base)
    index = np.arange(n)
    last_key = np.maximum.accumulate(np.where(every.key, index, -1))  # the keyframe at or before each sample
    next_key = np.minimum.accumulate(np.where(every.key, index, n)[::-1])[::-1]  # ... at or after
    ranges: list[tuple[int, int]] = []
    last_us: int | None = None
    codec = None
    for i, source in enumerate(sources):
        b, end = int(every.base[i]), int(every.base[i] + before_to[i])
        if last_us is None:
            showing = b + int(lens[i] - still_on[i])  # the first frame still on at from_us
            if showing >= end:
                continue
            first = int(last_key[showing])
            if first < b:
                first = int(next_key[b])
        else:
            first = int(next_key[b])
            if first < end and capture[first] <= last_us:  # overlaps what is taken: from its first keyframe after
                later = np.flatnonzero(every.key[b:end] & (capture[b:end] > last_us))
                first = b + int(later[0]) if len(later) else end
        if first >= end:
            continue
        if codec is None:
            codec = source.table.codec_key
        elif source.table.codec_key != codec:
            return every, ranges, (f"the video's size, timescale or encoder settings change at {int(capture[first])} "
                                   "µs; ask for the footage from then on separately")
        ranges.append((first, end))
        last_us = int(capture[end - 1])
    return every, ranges, None


def plan(sources: Sequence[Source], from_us: int, to_us: int) -> Layout:
    """The layout of ``[from_us, to_us)`` of these segments (in start order); ``NothingRecorded`` if empty."""
    every, ranges, truncated = select(sources, from_us, to_us) if sources else (None, [], None)
    if not ranges or every is None:
        raise NothingRecorded(f"no frame recorded between {from_us} and {to_us} µs")
    taken = np.zeros(len(every.capture) + 1, dtype=np.int64)
    np.add.at(taken, [a for a, _ in ranges], 1)
    np.add.at(taken, [b for _, b in ranges], -1)
    picked = np.flatnonzero(np.cumsum(taken[:-1]) > 0)
    first = sources[int(every.source[picked[0]])].table
    ts = first.timescale
    capture, own, which = every.capture[picked], every.duration[picked], every.source[picked]
    keyframes = np.flatnonzero(every.key[picked])
    del every
    # A new piece where a frame comes more than GAP_US after the previous one's own end.
    breaks = np.flatnonzero(capture[1:] - (capture[:-1] + own[:-1]) > GAP_US) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.append(breaks, len(capture))
    media = np.empty(len(capture), dtype=np.int64)
    pieces: list[Piece] = []
    gaps: list[tuple[int, int]] = []
    base = 0
    for a, b in zip(starts, ends, strict=True):
        media[a:b] = base + ((capture[a:b] - capture[a]) * ts + 500_000) // 1_000_000
        last = int(media[b - 1]) + max(1, (int(own[b - 1]) * ts + 500_000) // 1_000_000)
        end_us = int(capture[b - 1] + own[b - 1])
        if pieces:
            gaps.append((pieces[-1].end_us, int(capture[a])))
        pieces.append(Piece(base / ts, int(capture[a]), end_us, int(b - a)))
        base = last
    durations = np.append(np.diff(media), base - media[-1])
    offsets = np.concatenate([s.table.offsets for s in sources]).astype(np.int64)[picked]
    sizes = np.concatenate([s.table.sizes for s in sources]).astype(np.int64)[picked]
    # Chunks: runs of samples contiguous in one segment file.
    cut = np.flatnonzero((which[1:] != which[:-1]) | (offsets[1:] != offsets[:-1] + sizes[:-1])) + 1
    bounds = np.concatenate(([0], cut))
    lengths = np.add.reduceat(sizes, bounds)
    chunk_samples = np.diff(np.append(bounds, len(sizes))).tolist()
    chunk_src = [(sources[w].key, o, n) for w, o, n in zip(which[bounds].tolist(), offsets[bounds].tolist(),
                                                           lengths.tolist(), strict=True)]
    data_bytes = int(sizes.sum())
    stbl = [first.stsd, *_stts(durations), *_stss(keyframes, len(sizes)), *_stsc(chunk_samples), *_stsz(sizes)]
    frames = len(sizes)
    del capture, own, which, media, durations, offsets, sizes, keyframes  # a day: tens of MiB, not needed now
    fixed = sum(len(p) for p in _moov(first, ts, base, [*stbl, *_chunk_offsets([], False)]))
    wide = False
    for _ in range(2):  # the head's size decides whether offsets need 64 bits, which changes the head's size
        head_size = len(first.ftyp) + fixed + (8 if wide else 4) * len(chunk_src) + len(mdat_header(data_bytes))
        need = head_size + data_bytes > MAX_BOX32
        if need == wide:
            break
        wide = need
    out = head_size
    runs, chunk_offsets = [], []
    for key, src, length in chunk_src:
        runs.append(Run(out, key, src, length))
        chunk_offsets.append(out)
        out += length
    moov = _moov(first, ts, base, [*stbl, *_chunk_offsets(chunk_offsets, wide)])
    head = b"".join([first.ftyp, *moov, mdat_header(data_bytes)])
    assert len(head) == head_size, (len(head), head_size)
    return Layout(head, tuple(runs), head_size + data_bytes, ts, base, frames, tuple(pieces), tuple(gaps), truncated)


def _stts(durations: np.ndarray) -> list[bytes]:
    change = np.flatnonzero(np.diff(durations)) + 1
    starts = np.concatenate(([0], change))
    counts = np.diff(np.append(starts, len(durations)))
    entries = np.stack([counts, durations[starts]], axis=1).astype(">u4")
    return full_nest(b"stts", 0, 0, [struct.pack(">I", len(entries)), entries.tobytes()])


def _stss(keyframes: np.ndarray, samples: int) -> list[bytes]:
    if len(keyframes) == samples:
        return []  # every sample is a keyframe: no stss says so
    return full_nest(b"stss", 0, 0, [struct.pack(">I", len(keyframes)), (keyframes + 1).astype(">u4").tobytes()])


def _stsc(chunk_samples: list[int]) -> list[bytes]:
    entries: list[tuple[int, int, int]] = []
    for i, n in enumerate(chunk_samples, start=1):
        if not entries or entries[-1][1] != n:
            entries.append((i, n, 1))
    return full_nest(b"stsc", 0, 0, [struct.pack(">I", len(entries)), np.asarray(entries, dtype=">u4").tobytes()])


def _stsz(sizes: np.ndarray) -> list[bytes]:
    return full_nest(b"stsz", 0, 0, [struct.pack(">II", 0, len(sizes)), sizes.astype(">u4").tobytes()])


def _chunk_offsets(offsets: list[int], wide: bool) -> list[bytes]:
    values = np.asarray(offsets, dtype=">u8" if wide else ">u4")
    return full_nest(b"co64" if wide else b"stco", 0, 0, [struct.pack(">I", len(offsets)), values.tobytes()])


def _moov(t: SegmentTable, ts: int, duration: int, stbl: list[bytes]) -> list[bytes]:
    movie = (duration * MOVIE_TIMESCALE + ts // 2) // ts
    v_movie = 1 if movie > MAX_BOX32 else 0
    v_media = 1 if duration > MAX_BOX32 else 0
    times = ">QQI" if v_movie else ">III"
    mvhd = full_box(b"mvhd", v_movie, 0, struct.pack(times, 0, 0, MOVIE_TIMESCALE),
                    struct.pack(">Q" if v_movie else ">I", movie), struct.pack(">IH10x", 0x10000, 0x100), _MATRIX,
                    bytes(24), struct.pack(">I", 2))
    tkhd = full_box(b"tkhd", v_movie, 3, struct.pack(">QQ" if v_movie else ">II", 0, 0), struct.pack(">II", 1, 0),
                    struct.pack(">Q" if v_movie else ">I", movie), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
                    _MATRIX, struct.pack(">II", t.width << 16, t.height << 16))
    mdhd = full_box(b"mdhd", v_media, 0, struct.pack(">QQ" if v_media else ">II", 0, 0), struct.pack(">I", ts),
                    struct.pack(">Q" if v_media else ">I", duration), struct.pack(">HH", 0x55C4, 0))
    minf = nest(b"minf", [t.vmhd, t.dinf, *nest(b"stbl", stbl)])
    return nest(b"moov", [mvhd, *nest(b"trak", [tkhd, *nest(b"mdia", [mdhd, t.hdlr, *minf])])])
