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

from shared.config import default_bitrate

MICROSECONDS = Fraction(1, 1_000_000)


def x264_params(fps: float, keyframe_interval_s: float, max_bitrate_bps: int) -> str:
    """libx264 settings shared by the node and the benchmark's ffmpeg baseline.

    A fixed GOP (no scene-cut keyframes) keeps segment lengths predictable; the
    VBV cap bounds the bitrate, so a spool sized from it holds what it promises.
    """
    gop = max(1, round(fps * keyframe_interval_s))
    kbps = max(1, max_bitrate_bps // 1000)
    return f"keyint={gop}:min-keyint={gop}:scenecut=0:vbv-maxrate={kbps}:vbv-bufsize={kbps}"


@dataclass(frozen=True, slots=True)
class EncodedUnit:
    capture_us: int
    keyframe: bool
    data: bytes  # one access unit, Annex-B


class H264Encoder:
    name = "libx264"

    def __init__(self, width: int, height: int, fps: float, keyframe_interval_s: float = 1.0,
                 max_bitrate_bps: int | None = None):
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
            "x264-params": x264_params(fps, keyframe_interval_s,
                                       max_bitrate_bps or default_bitrate(width, height, fps)),
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
