"""From a camera frame to the model's input picture, and from the model's boxes back to the frame.

A frame is a yuv420p ``av.VideoFrame`` (scaled and converted to RGB by FFmpeg's swscale in one call) or an
RGB uint8 numpy array (H, W, 3; scaled by nearest neighbour). ``letterbox`` keeps the aspect ratio and pads
with grey (114), as YOLO models are trained; ``stretch`` fills the input, as the TF Object Detection API's
SSD models are trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.detect.result import DetectorError

PAD = 114
RESIZE_MODES = ("letterbox", "stretch")


@dataclass(frozen=True)
class Placement:
    """The frame (``src_w`` x ``src_h``) lies in the input picture scaled to ``w`` x ``h`` at (``x``, ``y``)."""

    src_w: int
    src_h: int
    x: int
    y: int
    w: int
    h: int

    @classmethod
    def fit(cls, src_w: int, src_h: int, in_w: int, in_h: int, mode: str) -> Placement:
        if mode == "stretch":
            return cls(src_w, src_h, 0, 0, in_w, in_h)
        scale = min(in_w / src_w, in_h / src_h)
        w, h = max(1, min(in_w, round(src_w * scale))), max(1, min(in_h, round(src_h * scale)))
        return cls(src_w, src_h, (in_w - w) // 2, (in_h - h) // 2, w, h)

    def to_frame(self, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
        """Boxes in input pixels → (N, 4) rows of x, y, w, h as fractions of the frame, clipped to it."""
        fx0 = np.clip((x0 - self.x) / self.w, 0.0, 1.0)
        fy0 = np.clip((y0 - self.y) / self.h, 0.0, 1.0)
        fx1 = np.clip((x1 - self.x) / self.w, 0.0, 1.0)
        fy1 = np.clip((y1 - self.y) / self.h, 0.0, 1.0)
        return np.stack([fx0, fy0, np.maximum(fx1 - fx0, 0.0), np.maximum(fy1 - fy0, 0.0)], axis=1)


def _resize_nearest(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    src_h, src_w = rgb.shape[:2]
    if (src_w, src_h) == (w, h):
        return rgb
    ys = np.minimum(((np.arange(h) + 0.5) * src_h / h).astype(np.intp), src_h - 1)
    xs = np.minimum(((np.arange(w) + 0.5) * src_w / w).astype(np.intp), src_w - 1)
    return rgb[ys[:, None], xs[None, :]]


def prepare(frame: Any, in_w: int, in_h: int, mode: str = "letterbox") -> tuple[np.ndarray, Placement]:
    """The model's (in_h, in_w, 3) uint8 RGB picture of ``frame`` and where the frame lies in it."""
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
            raise DetectorError(f"a frame must be RGB uint8 (H, W, 3), got {frame.dtype} {tuple(frame.shape)}")
        src_h, src_w = frame.shape[:2]
        place = Placement.fit(src_w, src_h, in_w, in_h, mode)
        scaled = _resize_nearest(frame, place.w, place.h)
    elif hasattr(frame, "reformat") and hasattr(frame, "width"):  # an av.VideoFrame, any pixel format
        src_w, src_h = int(frame.width), int(frame.height)
        if src_w <= 0 or src_h <= 0:
            raise DetectorError(f"a frame must have pixels, got {src_w}x{src_h}")
        place = Placement.fit(src_w, src_h, in_w, in_h, mode)
        scaled = frame.reformat(width=place.w, height=place.h, format="rgb24").to_ndarray()
    else:
        raise DetectorError(f"a frame must be an av.VideoFrame or an RGB numpy array, got {type(frame).__name__}")
    if (place.w, place.h) == (in_w, in_h):
        return np.ascontiguousarray(scaled), place
    canvas = np.full((in_h, in_w, 3), PAD, dtype=np.uint8)
    canvas[place.y:place.y + place.h, place.x:place.x + place.w] = scaled
    return canvas, place
