"""A real H.264 MP4 for the playback tests, encoded as the node encodes (libx264, fixed GOP, no B-frames)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from node.capture.encode import x264_params


def make_clip(path: Path, *, seconds: float = 24.0, fps: int = 15, size: tuple[int, int] = (320, 180),
              keyframe_s: float = 1.0) -> Path:
    """A clip whose frame ``i`` has a bright box at ``x = i`` (mod width) over a gradient; deterministic."""
    width, height = size
    ramp = np.linspace(0, 160, width, dtype=np.uint8)
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = ramp
    base[..., 2] = np.linspace(40, 200, height, dtype=np.uint8)[:, None]
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "preset": "ultrafast", "tune": "zerolatency", "threads": "1",
            "x264-params": x264_params(fps, keyframe_s, 2_000_000)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            pixels = base.copy()
            x = (i * 4) % (width - 40)
            pixels[height // 3:height * 2 // 3, x:x + 40] = (250, 230, 60)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
