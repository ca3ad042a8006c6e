"""What playback needs to know of a segment without opening it: its *shape*, kept in its index row.

A ``moov``-first MP4 of a day (``/recordings``) must state its size before its first byte. With every middle
segment's shape in the index, the store lays the file out from the rows alone and reads only the tables of the
segments it cuts (the first and last) before answering; the other tables are read while the ``moov`` streams
(store/playback/stream_layout.py). The shape is computed from the segment's own sample table, at ingest (and by
``check --repair`` and the lazy fill of older rows), by ``shape_of`` below: the same arithmetic as the layout's.

Columns (schema.sql, all NULL on rows indexed before schema version 5 until playback fills them):

- ``play_samples``: samples (frames) in the file;
- ``play_keyframes``: sync samples among them;
- ``play_lead``: samples before the first keyframe (0 for every segment a node makes);
- ``play_payload_bytes``: all samples' bytes;
- ``play_data_offset``: the file offset of sample 0 when the samples lie back to back in decode order (NULL when
  they do not: such a segment's table is read before answering);
- ``play_timescale``: the video track's timescale (ticks a second; 90000 for a node's segments);
- ``play_last_dts``: the last sample's decode time, ticks from the first's;
- ``play_end_dts``: the end of the last sample (its decode time plus its own duration), ticks;
- ``play_time_runs``: how many ``stts`` entries the layout writes for the segment taken whole: the runs of equal
  durations among all samples but the last, plus one for the last (whose duration the layout sets);
- ``play_codec``: a digest of the segment's ``codec_key``: two segments with different digests are not one track.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np

from store.playback.segment_tables import SegmentTable

SHAPE_COLUMNS = ("play_samples", "play_keyframes", "play_lead", "play_payload_bytes", "play_data_offset",
                 "play_timescale", "play_last_dts", "play_end_dts", "play_time_runs", "play_codec")


@dataclass(frozen=True)
class SegmentShape:
    samples: int
    keyframes: int
    lead: int
    payload_bytes: int
    data_offset: int | None
    timescale: int
    last_dts: int
    end_dts: int
    time_runs: int
    codec: str

    @property
    def last_us(self) -> int:
        """The last sample's capture time, µs after the segment's start."""
        return int(to_us(self.last_dts, self.timescale))

    @property
    def end_us(self) -> int:
        """The end of the last sample, µs after the segment's start."""
        return int(to_us(self.end_dts, self.timescale))

    @property
    def contiguous(self) -> bool:
        return self.data_offset is not None

    def values(self) -> tuple[int | str | None, ...]:
        """In ``SHAPE_COLUMNS`` order."""
        return astuple(self)


assert tuple(f"play_{f.name}" for f in fields(SegmentShape)) == SHAPE_COLUMNS


def to_us(ticks: np.ndarray | int, timescale: int) -> np.ndarray | int:
    """Media ticks from a segment's start → µs from its start, rounded half up: the one rounding playback uses."""
    return (ticks * 1_000_000 + timescale // 2) // timescale


def codec_digest(codec_key: bytes) -> str:
    return hashlib.blake2b(codec_key, digest_size=16).hexdigest()


def time_runs(dts: np.ndarray) -> int:
    """``stts`` entries for samples with these decode times: runs of equal durations but the last, plus it."""
    deltas = np.diff(dts.astype(np.int64))
    return 1 + (0 if len(deltas) == 0 else 1 + int(np.count_nonzero(np.diff(deltas))))


def shape_of(table: SegmentTable) -> SegmentShape:
    sizes = table.sizes.astype(np.int64)
    offsets = table.offsets.astype(np.int64)
    contiguous = bool((offsets[1:] == offsets[:-1] + sizes[:-1]).all())
    last = int(table.dts[-1])
    return SegmentShape(
        samples=table.samples, keyframes=len(table.keyframes),
        lead=int(table.keyframes[0]) if len(table.keyframes) else table.samples,
        payload_bytes=int(sizes.sum()), data_offset=int(offsets[0]) if contiguous else None,
        timescale=table.timescale, last_dts=last, end_dts=last + table.last_duration, time_runs=time_runs(table.dts),
        codec=codec_digest(table.codec_key))


def shape_from_row(values: Sequence[object]) -> SegmentShape | None:
    """The shape from its columns' values (``SHAPE_COLUMNS`` order), None where the row has none yet."""
    *numbers, codec = values
    if numbers[0] is None or codec is None:
        return None
    samples, keyframes, lead, payload, data_offset, timescale, last_dts, end_dts, runs = (
        None if v is None else int(v) for v in numbers)  # type: ignore[call-overload]
    if None in (samples, keyframes, lead, payload, timescale, last_dts, end_dts, runs):
        return None
    return SegmentShape(samples, keyframes, lead, payload, data_offset, timescale, last_dts,  # type: ignore[arg-type]
                        end_dts, runs, str(codec))  # type: ignore[arg-type]
