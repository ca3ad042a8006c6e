"""An event's snapshot: its best frame as a JPEG with the labelled object's box drawn on it."""

from __future__ import annotations

import av
import numpy as np

from store.media.thumbs import encode_jpeg

BOX_RGB = (255, 64, 32)  # a red-orange that stands out on grass, sky, walls and night footage


def draw_box(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A copy of the frame with the box's outline drawn, ~1/200 of the frame wide (at least 2 px)."""
    out = rgb.copy()
    height, width = out.shape[:2]
    x, y, w, h = box
    x0, y0 = int(round(x * width)), int(round(y * height))
    x1, y1 = int(round((x + w) * width)) - 1, int(round((y + h) * height)) - 1
    x0, x1 = max(0, min(width - 1, x0)), max(0, min(width - 1, x1))
    y0, y1 = max(0, min(height - 1, y0)), max(0, min(height - 1, y1))
    t = max(2, round(max(width, height) / 200))
    colour = np.array(BOX_RGB, dtype=np.uint8)
    out[y0 : min(y0 + t, y1 + 1), x0 : x1 + 1] = colour
    out[max(y1 - t + 1, y0) : y1 + 1, x0 : x1 + 1] = colour
    out[y0 : y1 + 1, x0 : min(x0 + t, x1 + 1)] = colour
    out[y0 : y1 + 1, max(x1 - t + 1, x0) : x1 + 1] = colour
    return out


def snapshot_jpeg(rgb: np.ndarray, box: tuple[float, float, float, float] | None) -> tuple[bytes, int, int]:
    """Blocking (a worker thread): the JPEG, its width and height (even, as JPEG's 4:2:0 wants)."""
    picture = draw_box(rgb, box) if box is not None else rgb
    height, width = picture.shape[:2]
    width, height = width - width % 2, height - height % 2
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:height, :width]), format="rgb24")
    return encode_jpeg(frame, width, height), width, height
