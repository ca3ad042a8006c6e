"""Cutting a camera's stream into segments at keyframes, and muxing them to MP4.

``Segmenter`` is pure bookkeeping (no I/O): push access units in, get finished
segments out. A segment always starts on a keyframe and is cut at the first
keyframe at (within half a frame of) its target length, so each plays on its own.
``mux_mp4`` runs on a worker thread; it remuxes, never re-encodes. Each MP4
carries a JSON description of itself in its ``comment`` tag (``segment_metadata``),
so the store's index can be rebuilt from the files alone.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from fractions import Fraction

import av

from shared.fanout import AccessUnit
from shared.protocol.ingest import SegmentHeader, sha256_hex

MICROSECONDS = Fraction(1, 1_000_000)
MP4_TIME_BASE = Fraction(1, 90_000)
# The container tag holding the segment's JSON metadata. FFmpeg's mp4 muxer writes
# ``comment`` as an iTunes-style ``\xa9cmt`` atom and reads it back under the same key
# (checked with PyAV 18 / FFmpeg 8). store/media/segment_file.py reads the same tag.
METADATA_TAG = "comment"
METADATA_VERSION = 1
GAP_US = 1_000_000


@dataclass
class PendingSegment:
    camera: str
    units: list[AccessUnit] = field(default_factory=list)

    @property
    def start_us(self) -> int:
        return self.units[0].capture_us


@dataclass(frozen=True)
class FinishedSegment:
    camera: str
    units: tuple[AccessUnit, ...]
    frame_interval_us: int
    next_start_us: int | None = None  # the capture time of the unit that starts the next segment, if known

    @property
    def start_us(self) -> int:
        return self.units[0].capture_us

    @property
    def end_us(self) -> int:
        """Just past the last frame: its capture time plus one frame interval, but never past the next
        segment's start (stamps a little closer than a frame: jitter, a slewing clock), so none overlap."""
        end = self.units[-1].capture_us + self.frame_interval_us
        return end if self.next_start_us is None else min(end, self.next_start_us)


class Segmenter:
    def __init__(self, camera: str, segment_seconds: float, fps: float) -> None:
        self.camera = camera
        self.target_us = int(segment_seconds * 1_000_000)
        self.frame_interval_us = int(round(1_000_000 / fps))
        self._current: PendingSegment | None = None

    def push(self, unit: AccessUnit) -> FinishedSegment | None:
        """Add one unit; return the segment it closed, if any."""
        finished = None
        current = self._current
        if current is None:
            if not unit.keyframe:
                return None  # a segment must start on a keyframe
            self._current = PendingSegment(self.camera, [unit])
            return None
        # A keyframe after a gap (a network source that dropped, a stalled capture) starts a new segment:
        # the store's coverage then shows the gap instead of a segment that spans it.
        gap = unit.capture_us - current.units[-1].capture_us > max(GAP_US, 4 * self.frame_interval_us)
        long_enough = unit.capture_us - current.start_us >= self.target_us - self.frame_interval_us // 2
        if unit.keyframe and (gap or long_enough):
            finished = self._close(unit.capture_us)
            self._current = PendingSegment(self.camera, [unit])
        else:
            current.units.append(unit)
        return finished

    def flush(self) -> FinishedSegment | None:
        return self._close() if self._current else None

    def _close(self, next_start_us: int | None = None) -> FinishedSegment | None:
        current, self._current = self._current, None
        if current is None or not current.units:
            return None
        return FinishedSegment(self.camera, tuple(current.units), self.frame_interval_us, next_start_us)


def segment_metadata(node: str, segment: FinishedSegment, width: int, height: int) -> dict[str, object]:
    """What a segment says about itself inside its MP4. Not its SHA-256: that covers the file."""
    return {
        "sht": METADATA_VERSION,
        "node": node,
        "camera": segment.camera,
        "start_us": segment.start_us,
        "end_us": segment.end_us,
        "frames": len(segment.units),
        "width": width,
        "height": height,
    }


def mux_mp4(
    segment: FinishedSegment, width: int, height: int, fps: float, metadata: dict[str, object] | None = None,
    codec: str = "h264",
) -> bytes:
    """Remux a segment's Annex-B units into a standalone MP4 (CPU and memory only, no files).

    ``metadata``, if given, is stored as JSON in the container's ``comment`` tag.
    """
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        if metadata is not None:
            # Set before the first mux, which writes the container header.
            container.metadata[METADATA_TAG] = json.dumps(metadata, separators=(",", ":"))
        stream = container.add_mux_stream(
            codec, rate=Fraction(fps).limit_denominator(1001), width=width, height=height
        )
        stream.time_base = MP4_TIME_BASE
        for unit in segment.units:
            packet = av.Packet(unit.data)  # type: ignore[arg-type]  # any buffer works
            packet.stream = stream
            packet.time_base = MICROSECONDS
            packet.pts = packet.dts = unit.capture_us - segment.start_us
            packet.duration = segment.frame_interval_us
            packet.is_keyframe = unit.keyframe
            container.mux(packet)
    return buffer.getvalue()


def build_segment(
    node: str, segment: FinishedSegment, width: int, height: int, fps: float, codec: str = "h264"
) -> tuple[SegmentHeader, bytes]:
    data = mux_mp4(segment, width, height, fps, segment_metadata(node, segment, width, height), codec)
    header = SegmentHeader(
        node=node,
        camera=segment.camera,
        start_us=segment.start_us,
        end_us=segment.end_us,
        frames=len(segment.units),
        bytes=len(data),
        sha256=sha256_hex(data),
        width=width,
        height=height,
        codec=codec,
    )
    return header, data
