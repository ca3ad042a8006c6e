"""The head of a ``/recordings`` MP4 (``ftyp``, ``moov``, the ``mdat`` header), written while it is sent.

A ``Plan`` (store/playback/stream_layout.py) fixes every size: each chunk's ``stts`` entries (``time_runs``),
sync samples and samples, so the ``moov``'s boxes and the file's total are known before any of the big tables
is written. ``Head`` is that layout: a few fixed byte strings (box headers, ``mvhd``, ``stsd``, ``stsc``,
``stco``/``co64``) between three tables (``stts``, ``stss``, ``stsz``) made of per-chunk parts. ``read(a, n)``
gives any bytes of it, loading only the tables of the chunks those bytes come from, so a Range request into the
middle of the ``moov`` costs the chunks it covers, not the ones before.

Each table is checked against its chunk as its part is written (``ChunkMismatch``): a segment whose file no
longer matches its index row ends the answer with an error rather than sending a wrong file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from store.playback.boxes import MAX_BOX32, full_box, mdat_header
from store.playback.segment_shape import codec_digest
from store.playback.segment_tables import SegmentTable
from store.playback.stream_layout import Chunk, Plan, Track, sample_spans

MOVIE_TIMESCALE = 1000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_ENTRY_BYTES = {b"stts": 8, b"stss": 4, b"stsz": 4}


class ChunkMismatch(OSError):
    """A segment's table does not match its chunk (the file or its index row changed since the layout); ``key``
    is that segment's row (its index in the plan's rows)."""

    def __init__(self, key: int, why: str) -> None:
        super().__init__(f"a segment's table no longer matches its index row ({why}); ask again")
        self.key = key


@dataclass(frozen=True)
class _Table:
    """Per-chunk entries of one table: chunk c's are bytes ``[starts[c], starts[c + 1])`` of the part."""

    kind: bytes
    starts: np.ndarray  # int64, one more than there are chunks

    @property
    def size(self) -> int:
        return int(self.starts[-1])


def _header(kind: bytes, payload_size: int) -> bytes:
    if payload_size + 8 > MAX_BOX32:
        raise ValueError(f"a {kind.decode()} box of {payload_size} bytes: more than an MP4 head can hold")
    return struct.pack(">I4s", payload_size + 8, kind)


@dataclass(frozen=True)
class Counts:
    """What the head's size and its first bytes follow from: the track, the media duration and a few totals. Made
    from a whole plan (``counts_of``) or, before the plan, from index rows (store/playback/sizing.py): equal counts
    are an equal head size, ``Content-Length`` and ``prefix``."""

    track: Track
    duration: int  # media ticks
    frames: int
    keyframes: int
    time_runs: int  # stts entries
    chunks: int  # and stsc entries: one a chunk, so that their number needs no pass over every chunk
    data_bytes: int


def counts_of(plan: Plan) -> Counts:
    chunks = plan.chunks
    return Counts(plan.track, plan.duration, sum(c.samples for c in chunks), sum(c.keyframes for c in chunks),
                  sum(c.time_runs for c in chunks), len(chunks), sum(c.nbytes for c in chunks))


@dataclass(frozen=True)
class Sizes:
    """The head's layout from its counts: its bytes up to the stts entries (``prefix``), the boxes' sizes around
    the per-chunk tables, and the file's total."""

    prefix: bytes  # ftyp, the moov's headers, mvhd, tkhd, mdhd, hdlr, vmhd, dinf, stsd, the stts header
    head_size: int
    total: int
    wide: bool  # co64 and 64-bit chunk offsets
    with_stss: bool

    @classmethod
    def of(cls, c: Counts) -> Sizes:
        t = c.track
        with_stss = c.keyframes != c.frames  # every sample a keyframe: no stss says so
        movie = (c.duration * MOVIE_TIMESCALE + t.timescale // 2) // t.timescale
        mvhd, tkhd, mdhd = _headers(t.width, t.height, t.timescale, c.duration, movie)
        fixed_stbl = (len(t.stsd) + 16 + 8 * c.time_runs + (16 + 4 * c.keyframes if with_stss else 0)
                      + 16 + 12 * c.chunks + 20 + 4 * c.frames + 16)
        wide = False
        for _ in range(2):  # the head's size decides whether offsets need 64 bits, which changes the head's size
            stbl = fixed_stbl + (8 if wide else 4) * c.chunks
            minf = len(t.vmhd) + len(t.dinf) + 8 + stbl
            mdia = len(mdhd) + len(t.hdlr) + 8 + minf
            trak = len(tkhd) + 8 + mdia
            moov = len(mvhd) + 8 + trak
            head_size = len(t.ftyp) + 8 + moov + len(mdat_header(c.data_bytes))
            need = head_size + c.data_bytes > MAX_BOX32
            if need == wide:
                break
            wide = need
        prefix = (t.ftyp + _header(b"moov", moov) + mvhd + _header(b"trak", trak) + tkhd + _header(b"mdia", mdia)
                  + mdhd + t.hdlr + _header(b"minf", minf) + t.vmhd + t.dinf + _header(b"stbl", stbl) + t.stsd
                  + _header(b"stts", 8 + 8 * c.time_runs) + struct.pack(">II", 0, c.time_runs))
        return cls(prefix, head_size, head_size + c.data_bytes, wide, with_stss)


class Head:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        chunks = plan.chunks
        self.counts = counts_of(plan)
        sizes = self.sizes = Sizes.of(self.counts)
        samples = np.fromiter((c.samples for c in chunks), dtype=np.int64, count=len(chunks))
        self.sample_base = np.concatenate(([0], np.cumsum(samples)[:-1]))
        keyframes = np.fromiter((c.keyframes for c in chunks), dtype=np.int64, count=len(chunks))
        runs = np.fromiter((c.time_runs for c in chunks), dtype=np.int64, count=len(chunks))
        nbytes = np.fromiter((c.nbytes for c in chunks), dtype=np.int64, count=len(chunks))
        stts = _Table(b"stts", np.concatenate(([0], np.cumsum(runs * 8))))
        stss = _Table(b"stss", np.concatenate(([0], np.cumsum(keyframes * 4)))) if sizes.with_stss else None
        stsz = _Table(b"stsz", np.concatenate(([0], np.cumsum(samples * 4))))
        stsc = _stsc(samples)
        assert len(stsc) == 16 + 12 * self.counts.chunks
        self.size = sizes.head_size
        self.total = sizes.total
        self.chunk_offsets = self.size + np.concatenate(([0], np.cumsum(nbytes)[:-1]))
        co = np.asarray(self.chunk_offsets, dtype=">u8" if sizes.wide else ">u4").tobytes()
        stco = _header(b"co64" if sizes.wide else b"stco", 8 + len(co)) + struct.pack(">II", 0, len(chunks)) + co
        parts: list[bytes | _Table] = [sizes.prefix, stts]
        if stss is not None:
            parts += [_header(b"stss", 8 + stss.size) + struct.pack(">II", 0, self.counts.keyframes), stss]
        parts += [stsc + _header(b"stsz", 12 + stsz.size) + struct.pack(">III", 0, 0, self.counts.frames), stsz,
                  stco + mdat_header(self.counts.data_bytes)]
        self.parts = parts
        self.part_starts = np.concatenate(([0], np.cumsum([len(p) if isinstance(p, bytes) else p.size
                                                           for p in parts])))
        assert int(self.part_starts[-1]) == self.size, (int(self.part_starts[-1]), self.size)

    def read(self, a: int, n: int, table_of: Callable[[int], SegmentTable]) -> bytes:
        """Blocking: bytes ``[a, a + n)`` of the head (fewer at its end). ``table_of(key)`` loads a chunk's table."""
        end = min(self.size, a + n)
        out: list[bytes] = []
        i = int(np.searchsorted(self.part_starts, a, side="right")) - 1
        while a < end:
            part, at = self.parts[i], int(self.part_starts[i])
            stop = min(end, int(self.part_starts[i + 1]))
            if isinstance(part, bytes):
                out.append(part[a - at:stop - at])
            else:
                out.append(self._table_bytes(part, a - at, stop - at, table_of))
            a = stop
            i += 1
        return b"".join(out)

    def reach(self, a: int, tables: int) -> int:
        """How many bytes from ``a`` (at least one) ``read`` can give while loading at most about ``tables``
        segment tables: what keeps a read's time bounded, whatever the range (a day's first 64 KiB of ``stts``
        would need thousands)."""
        n, pos = 0, a
        i = int(np.searchsorted(self.part_starts, a, side="right")) - 1
        while i < len(self.parts) and tables > 0:
            part, at = self.parts[i], int(self.part_starts[i])
            if isinstance(part, bytes):
                n += at + len(part) - pos
            else:
                c = int(np.searchsorted(part.starts, pos - at, side="right")) - 1
                stop = min(c + tables, len(part.starts) - 1)
                n += at + int(part.starts[stop]) - pos
                tables -= stop - c
            pos = a + n
            i += 1
        return max(1, n)

    def keys_for(self, a: int, n: int) -> list[int]:
        """The segments (row keys) whose tables ``read(a, n)`` needs, in order, each once."""
        keys: dict[int, None] = {}
        end = min(self.size, a + n)
        for i, part in enumerate(self.parts):
            at = int(self.part_starts[i])
            if isinstance(part, bytes) or at >= end or at + part.size <= a:
                continue
            lo = int(np.searchsorted(part.starts, a - at, side="right")) - 1
            hi = int(np.searchsorted(part.starts, end - at, side="left"))
            for c in range(max(0, lo), min(hi, len(self.plan.chunks))):
                keys[self.plan.chunks[c].key] = None
        return list(keys)

    def _table_bytes(self, table: _Table, a: int, b: int, table_of: Callable[[int], SegmentTable]) -> bytes:
        c = int(np.searchsorted(table.starts, a, side="right")) - 1
        out: list[bytes] = []
        while a < b:
            lo, hi = int(table.starts[c]), int(table.starts[c + 1])
            if hi > lo:
                chunk = self.plan.chunks[c]
                data = self.entries(table.kind, c, _checked(chunk, table_of(chunk.key), self.plan.track))
                if len(data) != hi - lo:
                    raise ChunkMismatch(chunk.key, f"{table.kind.decode()} of {len(data)} bytes, its layout has "
                                        f"{hi - lo}")
                out.append(data[a - lo:min(b, hi) - lo])
                a = min(b, hi)
            c += 1
        return b"".join(out)

    def entries(self, kind: bytes, c: int, table: SegmentTable) -> bytes:
        """Chunk ``c``'s entries of table ``kind``, from its segment's (checked) table."""
        chunk = self.plan.chunks[c]
        first, end = chunk.first, chunk.end
        if kind == b"stsz":
            return table.sizes[first:end].astype(">u4").tobytes()
        if kind == b"stss":
            keys = table.keyframes[(table.keyframes >= first) & (table.keyframes < end)].astype(np.int64)
            return (keys - first + int(self.sample_base[c]) + 1).astype(">u4").tobytes()
        deltas = np.diff(table.dts[first:end].astype(np.int64))
        last = self.plan.ends[c] - (self.plan.bases[c] + chunk.last_dts - chunk.first_dts)
        change = np.flatnonzero(np.diff(deltas)) + 1
        starts = np.concatenate(([0], change)) if len(deltas) else np.zeros(0, dtype=np.int64)
        counts = np.diff(np.append(starts, len(deltas)))
        entries = np.stack([np.append(counts, 1), np.append(deltas[starts], last)], axis=1)
        return entries.astype(">u4").tobytes()


def _checked(chunk: Chunk, table: SegmentTable, track: Track) -> SegmentTable:
    """The table, if it is still the one the chunk was laid out from; ``ChunkMismatch`` naming what differs."""
    first, end = chunk.first, chunk.end
    why = None
    if table.timescale != track.timescale:
        why = f"timescale {table.timescale}, not {track.timescale}"
    elif table.samples < end:
        why = f"{table.samples} samples, the layout takes up to {end}"
    elif (int(table.dts[first]) != chunk.first_dts or int(table.dts[end - 1]) != chunk.last_dts
          or (int(table.dts[end]) if end < table.samples else int(table.dts[-1]) + table.last_duration)
          != chunk.end_dts):
        why = "other sample times"
    elif not np.any(table.keyframes == first):
        why = f"sample {first} is not a keyframe"
    elif codec_digest(table.codec_key) != track.codec:
        why = "other codec settings"
    elif int(table.sizes[first:end].astype(np.int64).sum()) != chunk.nbytes:
        why = "other sample sizes"
    elif int(np.count_nonzero((table.keyframes >= first) & (table.keyframes < end))) != chunk.keyframes:
        why = "other keyframes"
    elif sample_spans(table, first, end) != chunk.spans:
        why = "its samples elsewhere in the file"
    if why is not None:
        raise ChunkMismatch(chunk.key, why)
    return table


def _stsc(samples: np.ndarray) -> bytes:
    """One entry a chunk (not one a run of equal counts): 12 bytes a segment, and the sizing needs no count of
    the runs, which only a pass over consecutive rows could give."""
    entries = np.stack([np.arange(1, len(samples) + 1), samples, np.ones(len(samples), dtype=np.int64)], axis=1)
    body = struct.pack(">II", 0, len(entries)) + entries.astype(">u4").tobytes()
    return _header(b"stsc", len(body)) + body


def _headers(width: int, height: int, ts: int, duration: int, movie: int) -> tuple[bytes, bytes, bytes]:
    v_movie = 1 if movie > MAX_BOX32 else 0
    v_media = 1 if duration > MAX_BOX32 else 0
    times = ">QQI" if v_movie else ">III"
    mvhd = full_box(b"mvhd", v_movie, 0, struct.pack(times, 0, 0, MOVIE_TIMESCALE),
                    struct.pack(">Q" if v_movie else ">I", movie), struct.pack(">IH10x", 0x10000, 0x100), _MATRIX,
                    bytes(24), struct.pack(">I", 2))
    tkhd = full_box(b"tkhd", v_movie, 3, struct.pack(">QQ" if v_movie else ">II", 0, 0), struct.pack(">II", 1, 0),
                    struct.pack(">Q" if v_movie else ">I", movie), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
                    _MATRIX, struct.pack(">II", width << 16, height << 16))
    mdhd = full_box(b"mdhd", v_media, 0, struct.pack(">QQ" if v_media else ">II", 0, 0), struct.pack(">I", ts),
                    struct.pack(">Q" if v_media else ">I", duration), struct.pack(">HH", 0x55C4, 0))
    return mvhd, tkhd, mdhd
