"""What one fMP4 fragment per access unit costs: the hand-written boxes (shared/protocol/fmp4.py) vs PyAV's muxer.

``python3 -m bench.fmp4_cost`` prints microseconds per access unit for a 320x180 and a 1280x720 stream.
"""

from __future__ import annotations

import io
import time
from fractions import Fraction

import av
import numpy as np

from node.capture.encode import H264Encoder
from shared.fanout import AccessUnit
from shared.fmp4_live import Fmp4Stream
from shared.protocol.live import LiveInit


def encoded(width: int, height: int, frames: int = 60) -> list[AccessUnit]:
    enc = H264Encoder(width, height, 15)
    rng = np.random.default_rng(0)
    out = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height, width, 3), np.uint8), format="rgb24")
        for u in enc.encode(frame.reformat(format="yuv420p"), 1_700_000_000_000_000 + i * 66_666):
            out.append(AccessUnit.build(u.capture_us, u.keyframe, u.data))
    return out


def by_hand(units: list[AccessUnit], width: int, height: int) -> float:
    stream = Fmp4Stream(LiveInit("cam0", "h264", width, height, 15))
    started = time.perf_counter()
    stream.header(units[0])
    for unit in units:
        stream.fragment(unit)
    return (time.perf_counter() - started) / len(units) * 1e6


def with_pyav(units: list[AccessUnit], width: int, height: int) -> float:
    """One muxer for the stream, flushing a fragment per access unit (frag_every_frame), read from a BytesIO."""
    started = time.perf_counter()
    sink = io.BytesIO()
    out = av.open(sink, "w", format="mp4",
                  options={"movflags": "frag_keyframe+empty_moov+default_base_moof+frag_every_frame"})
    stream = out.add_stream("h264", rate=15)
    stream.width, stream.height = width, height
    stream.time_base = Fraction(1, 90_000)
    base = units[0].capture_us
    for unit in units:
        packet = av.Packet(bytes(unit.data))
        packet.pts = packet.dts = (unit.capture_us - base) * 9 // 100
        packet.time_base = stream.time_base
        packet.is_keyframe = unit.keyframe
        packet.stream = stream
        out.mux(packet)
        sink.seek(0)
        sink.truncate()  # what a sender would take and send
    out.close()
    return (time.perf_counter() - started) / len(units) * 1e6


def main() -> None:
    for width, height in ((320, 180), (1280, 720)):
        units = encoded(width, height)
        print(f"{width}x{height}: by hand {by_hand(units, width, height):.1f} us/AU, "
              f"PyAV mp4 muxer {with_pyav(units, width, height):.1f} us/AU")


if __name__ == "__main__":
    main()
