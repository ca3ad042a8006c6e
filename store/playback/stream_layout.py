"""One seekable MP4 of a time range, laid out from the segments' index rows: its size before any table is read.

Pure: rows (a segment's start and ``SegmentShape``) and a way to load a segment's table in; ``Plan`` out: one
**chunk** per segment taken (which of its samples, their bytes, where they sit in the file and in media time),
the pieces and gaps, and the file's size. ``store/playback/stream_head.py`` writes the ``moov`` from it while it
is sent, one segment's table at a time; ``store/playback/routes.py`` streams the ``mdat``.

Tables are loaded before answering only for the segments the range cuts or that cannot be taken whole from
their shape: the first (the keyframe at or before ``from``), any whose last frame is at or after ``to``, one
that overlaps what is taken, does not start on a keyframe, holds its samples apart, has another timescale, or
whose row has no shape yet. The others are taken whole, as their row says; the head checks each table against
its chunk as it writes it (``stream_head.ChunkMismatch``). So the time to the first byte is one query and a
loop over rows, not a read per segment.

What the file is (tests/store/playback/test_stream_layout.py checks it against the whole-table reference):

- It starts on the keyframe at or before ``from_us`` (the last one at or before the frame showing at
  ``from_us``) and ends with the last frame captured before ``to_us``.
- Media time runs without gaps. Consecutive frames further apart than ``GAP_US`` beyond the earlier's duration
  (the next frame of its segment, or its segment's end) start a new **piece**; the time between, a **gap**, is
  left out. Inside a segment media time follows decode time tick for tick (so the segment's ``stts`` runs stay
  runs); each chunk starts at its capture time's place in its piece, so media time follows capture time within a
  tick: capture ≈ piece.start_us + (media − piece.media).
- A segment starting before the last frame taken is taken from its first keyframe after it.
- One sample description (the first segment's ``stsd``): a segment whose codec, size, parameter sets or
  timescale differ ends the file before it, and ``truncated`` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from store.playback.segment_shape import SegmentShape, codec_digest, time_runs, to_us
from store.playback.segment_tables import SegmentTable

GAP_US = 250_000  # as the timeline's coverage merges (docs/storage.md R5): a dropped frame or two is no gap


class NothingRecorded(ValueError):
    """No frame of the segments falls in the range."""


class Row(NamedTuple):  # tuples, not dataclasses: a day is 8,640 of each, made before the first byte
    start_us: int  # capture time of the segment's first sample (its decode time 0)
    shape: SegmentShape | None


class Chunk(NamedTuple):
    """Samples ``[first, end)`` of row ``key``'s segment, one chunk of the file."""

    key: int
    first: int
    end: int
    keyframes: int
    nbytes: int
    first_dts: int  # decode times of the first and last sample taken, ticks from the segment's first
    last_dts: int
    end_dts: int  # ... and of the end of the last (the next sample's, or the segment's end)
    first_us: int  # capture time of the first sample taken
    last_us: int  # ... of the last
    end_us: int  # ... plus its own duration (until the next frame of its segment, or the segment's end)
    time_runs: int  # the stts entries the head writes for it
    spans: tuple[tuple[int, int], ...]  # (offset, length) in the segment file of its bytes, in order

    @property
    def samples(self) -> int:
        return self.end - self.first


@dataclass(frozen=True)
class Track:
    """What the file's track takes from its first segment."""

    timescale: int
    ftyp: bytes
    stsd: bytes
    hdlr: bytes
    vmhd: bytes
    dinf: bytes
    width: int
    height: int
    codec: str  # codec_digest of its codec_key


@dataclass(frozen=True)
class Piece:
    media_s: float  # where the piece starts in the file's media time
    start_us: int  # capture time of its first frame
    end_us: int  # capture time just past its last frame
    frames: int


@dataclass(frozen=True)
class Plan:
    track: Track
    chunks: tuple[Chunk, ...]
    bases: tuple[int, ...]  # media time of each chunk's first sample, ticks
    ends: tuple[int, ...]  # media time just past each chunk's last sample (the next chunk's base within a piece)
    pieces: tuple[Piece, ...]
    gaps: tuple[tuple[int, int], ...]  # (start_us, end_us) of each gap between pieces
    truncated: str | None

    @property
    def duration(self) -> int:
        return self.ends[-1]

    @property
    def frames(self) -> int:
        return sum(c.samples for c in self.chunks)

    @property
    def start_us(self) -> int:
        return self.pieces[0].start_us


def sample_spans(table: SegmentTable, first: int, end: int) -> tuple[tuple[int, int], ...]:
    offsets = table.offsets[first:end].astype(np.int64)
    sizes = table.sizes[first:end].astype(np.int64)
    cut = np.flatnonzero(offsets[1:] != offsets[:-1] + sizes[:-1]) + 1
    bounds = np.concatenate(([0], cut))
    lengths = np.add.reduceat(sizes, bounds)
    return tuple(zip(offsets[bounds].tolist(), lengths.tolist(), strict=True))


def _cut(table: SegmentTable, start_us: int, from_us: int, to_us_: int, last_us: int | None) -> tuple[int, int]:
    """Which samples ``[first, end)`` of a loaded segment the file takes (``first >= end``: none)."""
    cap = start_us + np.asarray(to_us(table.dts.astype(np.int64), table.timescale))
    n = len(cap)
    ends = np.empty(n, dtype=np.int64)  # each sample's capture time plus its own duration
    ends[:-1] = cap[1:]
    ends[-1] = start_us + to_us(int(table.dts[-1]) + table.last_duration, table.timescale)
    end = int(np.searchsorted(cap, to_us_, side="left"))  # captured before to
    keys = table.keyframes.astype(np.int64)
    if last_us is None:  # the first chunk: from the keyframe at or before the frame showing at from
        showing = int(np.searchsorted(ends, from_us, side="right"))
        if showing >= end:
            return 0, 0
        k = int(np.searchsorted(keys, showing, side="right")) - 1
        first = int(keys[k]) if k >= 0 else (int(keys[0]) if len(keys) else n)
    else:
        first = int(keys[0]) if len(keys) else n
        if first < end and cap[first] <= last_us:  # overlaps what is taken: from its first keyframe after
            later = keys[(keys < end) & (cap[np.minimum(keys, n - 1)] > last_us)]
            first = int(later[0]) if len(later) else end
    return first, end


def _chunk_of(key: int, table: SegmentTable, start_us: int, first: int, end: int) -> Chunk:
    ts = table.timescale
    dts = table.dts
    last = end - 1
    own_end = int(dts[end]) if end < table.samples else int(dts[-1]) + table.last_duration
    keys = table.keyframes
    return Chunk(key, first, end, int(np.count_nonzero((keys >= first) & (keys < end))),
                 int(table.sizes[first:end].astype(np.int64).sum()), int(dts[first]), int(dts[last]), own_end,
                 start_us + int(to_us(int(dts[first]), ts)), start_us + int(to_us(int(dts[last]), ts)),
                 start_us + int(to_us(own_end, ts)), time_runs(dts[first:end]), sample_spans(table, first, end))


def _whole(key: int, start_us: int, shape: SegmentShape) -> Chunk:
    assert shape.data_offset is not None
    return Chunk(key, 0, shape.samples, shape.keyframes, shape.payload_bytes, 0, shape.last_dts, shape.end_dts,
                 start_us,
                 start_us + shape.last_us, start_us + shape.end_us, shape.time_runs,
                 ((shape.data_offset, shape.payload_bytes),))


def _track(table: SegmentTable) -> Track:
    return Track(table.timescale, table.ftyp, table.stsd, table.hdlr, table.vmhd, table.dinf, table.width,
                 table.height, codec_digest(table.codec_key))


def _changed(at_us: int) -> str:
    return (f"the video's size, timescale or encoder settings change at {at_us} µs; ask for the footage from then "
            "on separately")


class Planner:
    """The chunks of ``[from_us, to_us_)``, one row at a time, in start order (``take``); ``plan`` runs it over
    every row, store/playback/sizing.py over the first and last rows only. ``truncated`` once a segment differs
    from the track: no row is taken after it."""

    def __init__(self, from_us: int, to_us_: int) -> None:
        self.from_us, self.to_us = from_us, to_us_
        self.track: Track | None = None
        self.last_us: int | None = None  # capture time of the last sample taken
        self.truncated: str | None = None

    def whole(self, row: Row) -> bool:
        """Whether the row is taken whole from its shape, without its table."""
        shape, track, last_us = row.shape, self.track, self.last_us
        return (track is not None and last_us is not None and shape is not None and shape.contiguous
                and shape.lead == 0 and shape.timescale == track.timescale and row.start_us > last_us
                and row.start_us + shape.last_us < self.to_us)

    def take(self, key: int, row: Row, load: Callable[[int], SegmentTable | None]) -> Chunk | None:
        """Row ``key``'s chunk, or None when it gives none (no frame in range, gone, or the file ends before it:
        then ``truncated`` says why)."""
        if self.truncated is not None:
            return None
        track = self.track
        if self.whole(row):
            assert track is not None and row.shape is not None
            if row.shape.codec != track.codec:
                self.truncated = _changed(row.start_us)
                return None
            chunk = _whole(key, row.start_us, row.shape)
        else:
            table = load(key)
            if table is None:
                return None
            first, end = _cut(table, row.start_us, self.from_us, self.to_us, self.last_us)
            if first >= end:
                return None
            if track is None:
                self.track = _track(table)
            elif table.timescale != track.timescale or codec_digest(table.codec_key) != track.codec:
                self.truncated = _changed(row.start_us + int(to_us(int(table.dts[first]), table.timescale)))
                return None
            chunk = _chunk_of(key, table, row.start_us, first, end)
        self.last_us = chunk.last_us
        return chunk


def plan(rows: Sequence[Row], from_us: int, to_us_: int, load: Callable[[int], SegmentTable | None]) -> Plan:
    """The file of ``[from_us, to_us_)`` of these segments (in start order). ``load(i)`` (blocking) gives row i's
    table, or None when its segment is gone; it is called only for the rows that need it. ``NothingRecorded`` if
    no frame falls in the range."""
    planner = Planner(from_us, to_us_)
    chunks: list[Chunk] = []
    for key, row in enumerate(rows):
        chunk = planner.take(key, row, load)
        if chunk is not None:
            chunks.append(chunk)
        elif planner.truncated is not None:
            break
    if planner.track is None or not chunks:
        raise NothingRecorded(f"no frame recorded between {from_us} and {to_us_} µs")
    return _timed(planner.track, chunks, planner.truncated)


def _ticks(us: int, ts: int) -> int:
    return (us * ts + 500_000) // 1_000_000


def _timed(track: Track, chunks: list[Chunk], truncated: str | None) -> Plan:
    """Media times of the chunks, and the pieces and gaps."""
    ts = track.timescale
    bases: list[int] = []
    ends: list[int] = []
    pieces: list[Piece] = []
    gaps: list[tuple[int, int]] = []
    piece_media = piece_first_us = frames = 0
    for i, c in enumerate(chunks):
        new_piece = i == 0 or c.first_us - chunks[i - 1].end_us > GAP_US
        if new_piece:
            if i:
                prev = chunks[i - 1]
                ends.append(bases[-1] + prev.last_dts - prev.first_dts
                            + max(1, _ticks(prev.end_us - prev.last_us, ts)))
                pieces.append(Piece(piece_media / ts, piece_first_us, prev.end_us, frames))
                gaps.append((prev.end_us, c.first_us))
            piece_media = ends[-1] if ends else 0
            piece_first_us, frames = c.first_us, 0
            base = piece_media
        else:
            prev = chunks[i - 1]
            # Within a tick of its capture time; never on or before the last sample of the chunk before.
            base = max(piece_media + _ticks(c.first_us - piece_first_us, ts),
                       bases[-1] + prev.last_dts - prev.first_dts + 1)
            ends.append(base)
        bases.append(base)
        frames += c.samples
    last = chunks[-1]
    ends.append(bases[-1] + last.last_dts - last.first_dts + max(1, _ticks(last.end_us - last.last_us, ts)))
    pieces.append(Piece(piece_media / ts, piece_first_us, last.end_us, frames))
    return Plan(track, tuple(chunks), tuple(bases), tuple(ends), tuple(pieces), tuple(gaps), truncated)
