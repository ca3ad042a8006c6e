"""A stored segment's sample table, read from its own ``moov`` (never by demuxing), and a bounded cache of them.

The node's segments are ``ftyp``, ``free``, ``mdat``, ``moov`` (node/recording/segmenter.py ``mux_mp4``): one
video track, pts = dts (no B-frames: no ``ctts``), times in 1/90000 s from the segment's start. Reading one costs
the top-level box headers and the ``moov`` (a few KiB for a 10 s segment), through ``SegmentStore.open_media``, so
segments on S3 cost a ranged read or two, not the whole object.

Invariants of a ``SegmentTable``: ``offsets``, ``sizes`` and ``dts`` have one entry per sample, in decode order;
``offsets[i]`` is the file offset of sample i's bytes, ``sizes[i]`` their length; ``dts`` is strictly increasing
from the segment's first sample, in ``timescale`` units; ``keyframes`` are sample indexes, increasing;
``stsd`` is the whole sample description box (codec, size, SPS/PPS); ``codec_key`` is what of it two segments
must share to go into one track (all but the per-segment bit rates).
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from store.playback.boxes import BoxError, children, framed, one, top_level
from store.segments import SegmentStore

MAX_MOOV_BYTES = 64 * 1024 * 1024  # a 15-minute 60 fps segment's index is ~1 MiB: anything near this is not ours
DEFAULT_CACHE_SAMPLES = 3_000_000  # ~12 bytes a sample and ~2 KiB a segment: ~50 MiB, a day of a 30 fps camera


class TableError(ValueError):
    """A segment whose sample table playback cannot use (the message says which and why)."""


@dataclass(frozen=True, eq=False)
class SegmentTable:
    timescale: int
    ftyp: bytes  # the whole box, for the served file
    stsd: bytes  # the whole sample description box
    hdlr: bytes  # the track's whole handler, media header (vmhd) and data information boxes
    vmhd: bytes
    dinf: bytes
    width: int  # the track's display size, from tkhd
    height: int
    offsets: np.ndarray  # per sample (uint32, or int64 in a file over 4 GiB)
    sizes: np.ndarray  # uint32, per sample
    dts: np.ndarray  # per sample, in timescale units (int32, or int64 when that does not fit)
    last_duration: int  # the last sample's duration, timescale units
    keyframes: np.ndarray  # sample indexes (int32)

    @functools.cached_property
    def codec_key(self) -> bytes:
        """What two segments must share to be one track: the sample entry (codec, size, SPS/PPS) without its
        ``btrt``, the bit rates FFmpeg measures per segment."""
        return codec_key(self.stsd)

    @property
    def samples(self) -> int:
        return len(self.sizes)

    def durations(self) -> np.ndarray:
        return np.append(np.diff(self.dts), self.last_duration)


def read_table(f: BinaryIO, size: int, name: str = "segment") -> SegmentTable:
    """The table of the MP4 in ``f`` (``size`` bytes); ``TableError`` naming ``name`` if it cannot be used."""
    try:
        ftyp = moov = None
        for kind, offset, header, total in top_level(f, size):
            if kind == b"ftyp" and total < 4096:
                f.seek(offset)
                ftyp = f.read(total)
            elif kind == b"moov":
                if total > MAX_MOOV_BYTES:
                    raise TableError(f"{name}: its moov box is {total} bytes, more than a segment's can be")
                f.seek(offset + header)
                moov = f.read(total - header)
                if len(moov) != total - header:
                    raise TableError(f"{name}: the file ends inside its moov box")
        if moov is None:
            raise TableError(f"{name}: no moov box (a segment still being written, or not an MP4)")
        return _parse_moov(moov, ftyp or b"", name)
    except (BoxError, struct.error) as exc:
        raise TableError(f"{name}: {exc}") from exc


def _parse_moov(moov: bytes, ftyp: bytes, name: str) -> SegmentTable:
    for trak in children(moov).get(b"trak", []):
        parts = children(trak)
        mdia = children(one(parts, b"mdia", "trak"))
        hdlr = one(mdia, b"hdlr", "mdia")
        if bytes(hdlr[8:12]) != b"vide":
            continue
        mdhd = one(mdia, b"mdhd", "mdia")
        timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
        tkhd = one(parts, b"tkhd", "trak")
        w16, h16 = struct.unpack_from(">II", tkhd, len(tkhd) - 8)
        minf = children(one(mdia, b"minf", "mdia"))
        stbl = children(one(minf, b"stbl", "minf"))
        if timescale <= 0:
            raise TableError(f"{name}: its video track's timescale is 0")
        table = _samples(stbl, name)
        return SegmentTable(timescale, ftyp, framed(b"stsd", one(stbl, b"stsd", "stbl")), framed(b"hdlr", hdlr),
                            framed(b"vmhd", one(minf, b"vmhd", "minf")), framed(b"dinf", one(minf, b"dinf", "minf")),
                            w16 >> 16, h16 >> 16, *table)
    raise TableError(f"{name}: no video track")


def _array(payload: memoryview, skip: int, count: int, fields: str, name: str, box: str) -> np.ndarray:
    """``count`` big-endian records of ``fields`` (``>u4`` one number; ``>u4,>u4`` two) after ``skip`` bytes, as an
    int64 array (one column per field when there are several)."""
    width = fields.count(",") + 1
    dtype = np.dtype(fields.partition(",")[0])
    if skip + count * width * dtype.itemsize > len(payload):
        raise TableError(f"{name}: its {box} box says {count} entries but holds fewer")
    raw = np.frombuffer(payload, dtype=dtype, count=count * width, offset=skip).astype(np.int64)
    return raw.reshape(count, width) if width > 1 else raw


def _samples(stbl: dict[bytes, list[memoryview]], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int,
                                                                        np.ndarray]:
    stsz = one(stbl, b"stsz", "stbl")
    fixed, count = struct.unpack_from(">II", stsz, 4)
    sizes = (np.full(count, fixed, dtype=np.int64) if fixed else _array(stsz, 12, count, ">u4", name, "stsz"))
    if count == 0:
        raise TableError(f"{name}: no samples")
    stts = one(stbl, b"stts", "stbl")
    runs = _array(stts, 8, struct.unpack_from(">I", stts, 4)[0], ">u4,>u4", name, "stts")
    deltas = np.repeat(runs[:, 1], runs[:, 0])
    if len(deltas) != count:
        raise TableError(f"{name}: stts times {len(deltas)} samples, stsz sizes {count}")
    if (deltas[:-1] <= 0).any():
        raise TableError(f"{name}: sample times do not increase")
    dts = np.concatenate(([0], np.cumsum(deltas[:-1])))
    if b"ctts" in stbl:
        ctts = stbl[b"ctts"][0]
        offsets = _array(ctts, 8, struct.unpack_from(">I", ctts, 4)[0], ">u4,>u4", name, "ctts")
        if offsets[:, 1].any():
            raise TableError(f"{name}: composition offsets (B-frames) are not supported by playback")
    if b"stss" in stbl:
        stss = stbl[b"stss"][0]
        keyframes = _array(stss, 8, struct.unpack_from(">I", stss, 4)[0], ">u4", name, "stss") - 1
    else:
        keyframes = np.arange(count, dtype=np.int64)
    if b"co64" in stbl:
        co = stbl[b"co64"][0]
        chunk_offsets = _array(co, 8, struct.unpack_from(">I", co, 4)[0], ">u8", name, "co64")
    else:
        co = one(stbl, b"stco", "stbl")
        chunk_offsets = _array(co, 8, struct.unpack_from(">I", co, 4)[0], ">u4", name, "stco")
    stsc = one(stbl, b"stsc", "stbl")
    entries = _array(stsc, 8, struct.unpack_from(">I", stsc, 4)[0], ">u4,>u4,>u4", name, "stsc")
    chunks = len(chunk_offsets)
    if len(entries) == 0 or entries[0, 0] != 1:
        raise TableError(f"{name}: its stsc box does not start at chunk 1")
    firsts = np.append(entries[:, 0], chunks + 1)
    per_chunk = np.repeat(entries[:, 1], np.diff(firsts).clip(min=0))
    if len(per_chunk) != chunks or per_chunk.sum() != count:
        raise TableError(f"{name}: its chunks hold {per_chunk.sum()} samples, stsz sizes {count}")
    ends = np.cumsum(sizes)
    starts = ends - sizes
    if chunks == 1:  # the node's segments: one chunk, the whole mdat
        offsets = int(chunk_offsets[0]) + starts
    else:
        chunk_of = np.repeat(np.arange(chunks), per_chunk)
        chunk_first = np.concatenate(([0], np.cumsum(per_chunk)[:-1]))
        offsets = chunk_offsets[chunk_of] + starts - starts[chunk_first][chunk_of]
    # Kept compact (a day of a 30 fps camera is 2.6 million samples): 32 bits wherever the values fit (offsets are
    # below their largest chunk's offset plus every sample's size; dts increase from 0).
    if int(chunk_offsets.max()) + int(ends[-1]) <= 0xFFFF_FFFF:
        offsets = offsets.astype(np.uint32)
    if int(dts[-1]) <= 0x7FFF_FFFF:
        dts = dts.astype(np.int32)
    return offsets, sizes.astype(np.uint32), dts, int(deltas[-1]), keyframes.astype(np.int32)


def codec_key(stsd: bytes) -> bytes:
    """A ``stsd`` box with the ``btrt`` boxes of its visual sample entries left out (see ``SegmentTable``)."""
    try:
        entries = children(stsd, 16)  # box header, version and flags, entry count
        parts = []
        for kind, payloads in entries.items():
            for entry in payloads:
                # A VisualSampleEntry: 78 bytes of fields (sizes, resolution, depth), then its boxes.
                inner = children(entry, 78) if len(entry) >= 78 else {}
                parts.append(kind + bytes(entry[:78]) + b"".join(
                    k + framed(k, p) for k, ps in sorted(inner.items()) if k != b"btrt" for p in ps))
        return b"".join(parts)
    except BoxError:
        return stsd


class TableCache:
    """Tables by a segment's identity (name, size, and for files the mtime), least recently used dropped first once
    they hold more than ``max_samples`` samples in all. Thread-safe: worker threads fill it."""

    def __init__(self, max_samples: int = DEFAULT_CACHE_SAMPLES) -> None:
        self.max_samples = max_samples
        self._tables: OrderedDict[Hashable, SegmentTable] = OrderedDict()
        self._samples = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._tables)

    def load(self, segments: SegmentStore, name: str, size: int) -> SegmentTable:
        """Blocking (a worker thread): the table of segment ``name`` (``size`` bytes, from its index row)."""
        key: Hashable = (name, size)
        local = _local_path(segments, name)
        if local is not None:
            st = os.stat(local)  # FileNotFoundError: retention deleted it since the index was read
            key = (name, st.st_size, st.st_mtime_ns)
            size = st.st_size
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
                self.hits += 1
                return table
            self.misses += 1
        with open_segment(segments, name) as f:
            table = read_table(f, size, name)
        with self._lock:
            if key not in self._tables:
                self._tables[key] = table
                self._samples += table.samples
            while self._samples > self.max_samples and len(self._tables) > 1:
                _, dropped = self._tables.popitem(last=False)
                self._samples -= dropped.samples
        return table


def _local_path(segments: SegmentStore, name: str) -> Path | None:
    path = getattr(segments, "path", None)
    return path(name) if segments.disk_path is not None and callable(path) else None


@contextlib.contextmanager
def open_segment(segments: SegmentStore, name: str):  # type: ignore[no-untyped-def]
    """Blocking: a seekable binary reader of the segment (a file, or S3 ranged reads) for the block."""
    with segments.open_media(name) as media:
        if isinstance(media, Path):
            with media.open("rb") as f:
                yield f
        else:
            yield media
