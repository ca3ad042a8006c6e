"""Cutting a spooled segment down to the keyframe intervals an event wants (``motion`` mode).

A 10 s segment that an event wants only the last 3 s of keeps just those
GOPs: the cut starts at the keyframe at or before the wanted span, so the
result plays on its own. Remux only (PyAV), never decode; runs on a worker thread.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av

from node.recording.segmenter import METADATA_TAG
from shared.protocol.ingest import SegmentHeader, sha256_hex

MICROSECONDS = Fraction(1, 1_000_000)


def trim_segment(path: Path, header: SegmentHeader, keep_from_us: int, keep_to_us: int) -> tuple[SegmentHeader,
                                                                                                 bytes] | None:
    """The part of the segment from the keyframe at or before ``keep_from_us`` to ``keep_to_us``.

    Returns None if that is the whole segment (nothing to gain) or nothing.
    """
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        packets = [p for p in source.demux(stream) if p.size > 0 and p.pts is not None]
        tb = stream.time_base or MICROSECONDS
        pts = [int(p.pts or 0) for p in packets]
        times = [header.start_us + int(t * tb / MICROSECONDS) for t in pts]
        # The muxer rounded each capture time to its time base (1/90000 s: 11 µs): a time read back may lie a
        # tick (and the truncation here 1 µs) either side of the capture time it stands for.
        margin_us = math.ceil(tb / MICROSECONDS) + 1
        kept = frames_to_keep(times, [p.is_keyframe for p in packets], keep_from_us, keep_to_us, margin_us)
        if kept is None:
            return None
        first, last = kept
        if first == 0 and last == len(packets) - 1:
            return None
        interval = (header.end_us - header.start_us) // max(1, header.frames)
        # never past the segment's own end (its frames' mean interval may be longer than its last one)
        start_us, end_us, frames = times[first], min(times[last] + interval, header.end_us), last - first + 1
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mp4") as out:
            description = _describe(source.metadata.get(METADATA_TAG), start_us, end_us, frames)
            if description:
                out.metadata[METADATA_TAG] = description  # what rebuild-index reads: it must match the cut
            target = out.add_stream_from_template(stream)
            base = pts[first]
            for packet, t in zip(packets[first:last + 1], pts[first:last + 1], strict=True):
                packet.pts = t - base
                packet.dts = t - base if packet.dts is None else int(packet.dts) - base
                packet.stream = target
                out.mux(packet)
    data = buffer.getvalue()
    trimmed = SegmentHeader(node=header.node, camera=header.camera, start_us=start_us, end_us=end_us, frames=frames,
                            bytes=len(data), sha256=sha256_hex(data), codec=header.codec, width=header.width,
                            height=header.height)
    return trimmed, data


def frames_to_keep(times: Sequence[int], keyframes: Sequence[bool], keep_from_us: int, keep_to_us: int,
                   margin_us: int = 0) -> tuple[int, int] | None:
    """(first, last): the frames (indexes, in capture order) to keep of one segment for the wanted span
    [keep_from_us, keep_to_us): from the keyframe of the frame captured at or before ``keep_from_us`` (the first
    one if none is) through the last frame captured before ``keep_to_us``; None if no frame is wanted.

    ``times`` may each lie up to ``margin_us`` from the true capture time. A frame that may have been captured
    before the end is kept (one frame too many at worst, never one captured within the span too few). At the
    start the times are taken as they are: a keyframe read back at the start may have come up to a tick after it,
    and the frame before it, not kept then, showed for those few µs of the span only (where the other choice would
    keep a whole GOP too many each time a keyframe falls on the start)."""
    first = 0
    for i, (t, keyframe) in enumerate(zip(times, keyframes, strict=True)):
        if t > keep_from_us:
            break
        if keyframe:
            first = i
    last = max((i for i, t in enumerate(times) if t - margin_us < keep_to_us), default=-1)
    return None if last < first else (first, last)


def _describe(text: str | None, start_us: int, end_us: int, frames: int) -> str | None:
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    return json.dumps({**doc, "start_us": start_us, "end_us": end_us, "frames": frames})
