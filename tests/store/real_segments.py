"""Tiny real MP4 segments for store tests: the store refuses anything that is not one."""

from __future__ import annotations

from functools import lru_cache

from node.capture.encode import H264Encoder
from node.recording.segmenter import FinishedSegment, build_segment
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit

W, H, FPS = 64, 48, 10


@lru_cache(maxsize=8)
def real_mp4(frames: int = 1) -> bytes:
    """A standalone MP4 of ``frames`` frames (64x48), the same bytes every call."""
    source, encoder = SyntheticSource(W, H, FPS), H264Encoder(W, H, FPS)
    encoded = [u for i in range(frames) for u in encoder.encode(source.read(i), i * 100_000)] + encoder.flush()
    units = [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded]
    _, data = build_segment("node0", FinishedSegment("cam0", tuple(units), 100_000), W, H, FPS)
    return data
