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
- ``play_last_us``: the last sample's capture time minus the segment's start, µs, rounded as the layout rounds;
- ``play_span_us``: the same for the end of the last sample (its capture time plus its own duration);
- ``play_codec``: a digest of the segment's ``codec_key``: two segments with different digests are not one track.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np

from store.playback.segment_tables import SegmentTable

SHAPE_COLUMNS = ("play_samples", "play_keyframes", "play_lead", "play_payload_bytes", "play_data_offset",
                 "play_last_us", "play_span_us", "play_codec")


@dataclass(frozen=True)
class SegmentShape:
    samples: int
    keyframes: int
    lead: int
    payload_bytes: int
    data_offset: int | None
    last_us: int
    span_us: int
    codec: str

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


def shape_of(table: SegmentTable) -> SegmentShape:
    sizes = table.sizes.astype(np.int64)
    offsets = table.offsets.astype(np.int64)
    contiguous = bool((offsets[1:] == offsets[:-1] + sizes[:-1]).all())
    last = int(table.dts[-1])
    return SegmentShape(
        samples=table.samples, keyframes=len(table.keyframes),
        lead=int(table.keyframes[0]) if len(table.keyframes) else table.samples,
        payload_bytes=int(sizes.sum()), data_offset=int(offsets[0]) if contiguous else None,
        last_us=int(to_us(last, table.timescale)), span_us=int(to_us(last + table.last_duration, table.timescale)),
        codec=codec_digest(table.codec_key))


def shape_from_row(values: Sequence[object]) -> SegmentShape | None:
    """The shape from its columns' values (``SHAPE_COLUMNS`` order), None where the row has none yet."""
    samples, keyframes, lead, payload, data_offset, last_us, span_us, codec = values
    if samples is None or codec is None:
        return None
    return SegmentShape(int(samples), int(keyframes), int(lead), int(payload),  # type: ignore[call-overload]
                        None if data_offset is None else int(data_offset),  # type: ignore[call-overload]
                        int(last_us), int(span_us), str(codec))  # type: ignore[call-overload]
