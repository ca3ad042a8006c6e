"""H.264 encoding through PyAV. One encoder per camera; called only from its capture thread.

libx264 with ``preset=ultrafast`` and ``tune=zerolatency``: no lookahead and no
B-frames, so each frame comes out as one access unit straight away, in Annex-B
with SPS and PPS repeated on every keyframe (no global header), which is what
the live framing and the segmenter both need.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext

MICROSECONDS = Fraction(1, 1_000_000)


@dataclass(frozen=True, slots=True)
class EncodedUnit:
    capture_us: int
    keyframe: bool
    data: bytes  # one access unit, Annex-B


class H264Encoder:
    name = "libx264"

    def __init__(self, width: int, height: int, fps: float, keyframe_interval_s: float = 1.0):
        self.width, self.height = width, height
        gop = max(1, round(fps * keyframe_interval_s))
        ctx = cast(VideoCodecContext, av.CodecContext.create(self.name, "w"))
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = MICROSECONDS
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.gop_size = gop
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            # A fixed GOP (no scene-cut keyframes) keeps segment lengths predictable.
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
            # One thread per encoder: six cameras share two cores, and sliced threads
            # would only add contention.
            "threads": "1",
        }
        ctx.open()
        self._ctx = ctx

    def encode(self, frame: av.VideoFrame, capture_us: int) -> list[EncodedUnit]:
        frame.pts = capture_us
        frame.time_base = MICROSECONDS
        return self._units(self._ctx.encode(frame))

    def flush(self) -> list[EncodedUnit]:
        return self._units(self._ctx.encode(None))

    @staticmethod
    def _units(packets: list[av.Packet]) -> list[EncodedUnit]:
        return [EncodedUnit(int(p.pts or 0), bool(p.is_keyframe), bytes(p)) for p in packets]
