"""What the sizing (store/playback/sizing.py) needs of a run of consecutive segment rows, as a ``Part``: sums over
their shapes, whether each could be taken whole, the least step from one's last frame to the next's start, the
gaps, and the first and last rows. Parts of consecutive runs combine (``combine``) into the summary of the rows
between a file's first and last chunks.

A part comes from rows (``part_of``, Python, for an hour being summarised) or from SQL over a span of rows
(sizing.py, for the partial hours at a range's ends and hours not summarised yet). Each UTC hour's part, of the
rows that start in it, is kept in ``coverage_hours.playback`` (``to_json``/``from_json``), recomputed with the
hour's other summaries and trusted only while the hour is clean (store/maintenance/coverage.py), so a day's file
is sized from 24 rows of summaries and the rows of two partial hours, whatever the number of segments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from store.playback.segment_shape import SegmentShape, shape_from_row
from store.playback.stream_layout import GAP_US, Row

PACK = 1 << 24  # µs: a last sample longer than this is not taken whole by the sizing (SQL packs it in 24 bits)


@dataclass(frozen=True)
class Gap:
    """Consecutive rows further apart than GAP_US: the last sample of the one before, the start of the next."""

    last_start: int
    last_dts: int
    last_us: int
    end_us: int
    start_us: int


@dataclass(frozen=True)
class Part:
    rows: int
    samples: int
    keyframes: int
    payload: int
    time_runs: int
    size_bytes: int  # the files' sizes
    start_sum: int  # the rows' start times after ``origin``, summed
    origin: int
    whole: bool  # every row has a shape that lets the plan take it whole (samples together, from a keyframe)
    timescale: int | None  # the rows' one timescale and codec digest, None when they differ
    codec: str | None
    max_last_us: int  # the latest capture time of a last sample
    min_step: int | None  # the least time from a row's last sample to the next row's start (None: one row)
    gaps: tuple[Gap, ...]
    first: Row
    last: Row


def _whole_shape(shape: SegmentShape | None) -> bool:
    return shape is not None and shape.contiguous and shape.lead == 0 and shape.end_us - shape.last_us < PACK


def part_of(rows: Sequence[tuple[int, int, SegmentShape | None]], origin: int) -> Part | None:
    """The part of rows (start_us, size_bytes, shape) in start order; None for none."""
    if not rows:
        return None
    shapes = [shape for _, _, shape in rows]
    known = [s for s in shapes if s is not None]
    timescales = {s.timescale for s in known}
    codecs = {s.codec for s in known}
    steps: list[int] = []
    gaps: list[Gap] = []
    for (start, _, shape), (after, _, _) in zip(rows, rows[1:], strict=False):
        if shape is None:
            continue
        steps.append(after - (start + shape.last_us))
        if after - (start + shape.end_us) > GAP_US:
            gaps.append(Gap(start, shape.last_dts, start + shape.last_us, start + shape.end_us, after))
    return Part(
        rows=len(rows), samples=sum(s.samples for s in known), keyframes=sum(s.keyframes for s in known),
        payload=sum(s.payload_bytes for s in known), time_runs=sum(s.time_runs for s in known),
        size_bytes=sum(size for _, size, _ in rows), start_sum=sum(start - origin for start, _, _ in rows),
        origin=origin, whole=all(_whole_shape(s) for s in shapes),
        timescale=timescales.pop() if len(timescales) == 1 and len(known) == len(rows) else None,
        codec=codecs.pop() if len(codecs) == 1 and len(known) == len(rows) else None,
        max_last_us=max((start + s.last_us for start, _, s in rows if s is not None), default=0),
        min_step=min(steps) if steps else None,
        gaps=tuple(gaps), first=Row(rows[0][0], rows[0][2]), last=Row(rows[-1][0], rows[-1][2]))


@dataclass(frozen=True)
class Summary:
    """The rows between the first and the last chunk, each to be taken whole."""

    rows: int
    samples: int
    keyframes: int
    payload: int
    time_runs: int
    size_bytes: int
    start_sum: int  # after the first chunk's row
    min_step: int | None
    first: Row
    last: Row
    gaps: tuple[Gap, ...]


def combine(parts: Iterable[Part | None], after_us: int, to_us: int, timescale: int, codec: str,
            max_gaps: int) -> Summary | None:
    """The summary of consecutive parts (in order), or None when a row cannot be taken whole in a file of that
    track ending at ``to_us``, or when there are more than ``max_gaps`` gaps."""
    runs = [p for p in parts if p is not None and p.rows]
    if not runs:
        return None
    if any(not p.whole or p.timescale != timescale or p.codec != codec or p.max_last_us >= to_us for p in runs):
        return None
    steps = [p.min_step for p in runs if p.min_step is not None]
    gaps: list[Gap] = list(runs[0].gaps)
    for before, after in zip(runs, runs[1:], strict=False):
        last = before.last
        assert last.shape is not None
        steps.append(after.first.start_us - (last.start_us + last.shape.last_us))
        if after.first.start_us - (last.start_us + last.shape.end_us) > GAP_US:
            gaps.append(Gap(last.start_us, last.shape.last_dts, last.start_us + last.shape.last_us,
                            last.start_us + last.shape.end_us, after.first.start_us))
        gaps.extend(after.gaps)
    if len(gaps) > max_gaps:
        return None
    return Summary(sum(p.rows for p in runs), sum(p.samples for p in runs), sum(p.keyframes for p in runs),
                   sum(p.payload for p in runs), sum(p.time_runs for p in runs), sum(p.size_bytes for p in runs),
                   sum(p.start_sum + p.rows * (p.origin - after_us) for p in runs), min(steps, default=None),
                   runs[0].first, runs[-1].last, tuple(gaps))


def to_json(part: Part | None) -> str:
    """``coverage_hours.playback``: a part, or ``{"rows": 0}`` for an hour in which no row starts."""
    if part is None:
        return '{"rows":0}'
    doc = {k: getattr(part, k) for k in ("rows", "samples", "keyframes", "payload", "time_runs", "size_bytes",
                                         "start_sum", "origin", "whole", "timescale", "codec", "max_last_us",
                                         "min_step")}
    doc["gaps"] = [[g.last_start, g.last_dts, g.last_us, g.end_us, g.start_us] for g in part.gaps]
    doc["first"] = [part.first.start_us, *(part.first.shape.values() if part.first.shape else ())]
    doc["last"] = [part.last.start_us, *(part.last.shape.values() if part.last.shape else ())]
    return json.dumps(doc, separators=(",", ":"))


def from_json(text: str) -> Part | None:
    doc = json.loads(text)
    if not doc["rows"]:
        return None

    def row(values: list[object]) -> Row:
        return Row(int(values[0]), shape_from_row(values[1:]) if len(values) > 1 else None)  # type: ignore[call-overload]

    return Part(int(doc["rows"]), int(doc["samples"]), int(doc["keyframes"]), int(doc["payload"]),
                int(doc["time_runs"]), int(doc["size_bytes"]), int(doc["start_sum"]), int(doc["origin"]),
                bool(doc["whole"]), doc["timescale"], doc["codec"], int(doc["max_last_us"]), doc["min_step"],
                tuple(Gap(*(int(v) for v in g)) for g in doc["gaps"]), row(doc["first"]), row(doc["last"]))
