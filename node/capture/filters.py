"""Filters applied to each frame on the capture thread, before the one encode.

Privacy masks black out polygons (normalised coordinates) in the Y plane and
make U/V neutral in the matching 4:2:0 chroma block, so nothing of the masked
area reaches the encoder, the recording or a viewer. The masks are rasterised
once into boolean arrays cropped to their bounding box; an axis-aligned
rectangle is a plain slice assignment.

The timestamp overlay blits pre-rendered glyphs (a 5x7 pixel font, scaled to
the frame) into the Y plane: one slice copy per character, no font rendering
per frame.

Measured on this machine (``python -m node.capture.filters``): see docs/cameras.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np

from node.sources.base import plane_view
from shared.config import CameraConfig

BLACK_Y, NEUTRAL_C = 16, 128
TEXT_Y, BOX_Y = 235, 16

Polygon = Sequence[tuple[float, float]]

# 5x7 glyphs, one string of 5 bits per row.
FONT = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    " ": ("00000",) * 7,
}


def rasterise(polygon: Polygon, width: int, height: int) -> tuple[int, int, np.ndarray] | None:
    """(x0, y0, mask) of the pixels whose centres lie inside ``polygon`` (even-odd rule), cropped to its box."""
    pts = np.array([(x * width, y * height) for x, y in polygon], dtype=np.float64)
    x0, y0 = max(0, int(np.floor(pts[:, 0].min()))), max(0, int(np.floor(pts[:, 1].min())))
    x1, y1 = min(width, int(np.ceil(pts[:, 0].max()))), min(height, int(np.ceil(pts[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return None
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
        if ay == by:
            continue
        crosses = (ay > py) != (by > py)
        x_at = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < x_at)
    return x0, y0, inside


@dataclass(frozen=True)
class _Region:
    x0: int
    y0: int
    mask: np.ndarray | None  # None: the whole box (a rectangle)
    w: int
    h: int

    def fill(self, plane: np.ndarray, value: int) -> None:
        view = plane[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]
        if self.mask is None:
            view[:] = value
        else:
            np.copyto(view, np.uint8(value), where=self.mask)


def _region(polygon: Polygon, width: int, height: int) -> _Region | None:
    found = rasterise(polygon, width, height)
    if found is None:
        return None
    x0, y0, mask = found
    if not mask.any():
        return None
    h, w = mask.shape
    return _Region(x0, y0, None if mask.all() else mask, w, h)


class PrivacyMasks:
    def __init__(self, polygons: Sequence[Polygon], width: int, height: int) -> None:
        self.luma = [r for r in (_region(p, width, height) for p in polygons) if r is not None]
        # A chroma sample covers 2x2 luma pixels: mask it if any of them is masked, so no colour leaks.
        self.chroma: list[_Region] = []
        for r in self.luma:
            full = np.ones((r.h, r.w), dtype=bool) if r.mask is None else r.mask
            pad = np.zeros((r.h + 2, r.w + 2), dtype=bool)
            pad[r.y0 % 2 : r.y0 % 2 + r.h, r.x0 % 2 : r.x0 % 2 + r.w] = full
            pad = pad[: pad.shape[0] // 2 * 2, : pad.shape[1] // 2 * 2]
            blocks = np.asarray(pad.reshape(pad.shape[0] // 2, 2, pad.shape[1] // 2, 2).any(axis=(1, 3)))
            cx0, cy0 = r.x0 // 2, r.y0 // 2
            blocks = blocks[: height // 2 - cy0, : width // 2 - cx0]
            rows, cols = np.nonzero(blocks.any(axis=1))[0], np.nonzero(blocks.any(axis=0))[0]
            blocks = blocks[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            self.chroma.append(_Region(cx0 + cols[0], cy0 + rows[0], None if blocks.all() else blocks,
                                       blocks.shape[1], blocks.shape[0]))

    def apply(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        for r in self.luma:
            r.fill(y, BLACK_Y)
        for r in self.chroma:
            r.fill(u, NEUTRAL_C)
            r.fill(v, NEUTRAL_C)


class TimestampOverlay:
    """``YYYY-MM-DD HH:MM:SS`` (local time) in the top-left corner, white on a black box."""

    def __init__(self, width: int, height: int) -> None:
        self.scale = max(1, height // 240)
        s, pad = self.scale, self.scale
        self.glyph_w, self.glyph_h = 6 * s, 9 * s  # 5x7 plus one column and two rows of box
        self.glyphs = {}
        for char, rows in FONT.items():
            bits = np.array([[c == "1" for c in row] for row in rows], dtype=bool)
            big = np.kron(bits, np.ones((s, s), dtype=bool))
            cell = np.full((self.glyph_h, self.glyph_w), BOX_Y, dtype=np.uint8)
            cell[s : s + 7 * s, 0 : 5 * s][big] = TEXT_Y
            self.glyphs[char] = cell
        self.x0 = self.y0 = pad * 2
        self.chars = 19
        if self.x0 + self.chars * self.glyph_w > width or self.y0 + self.glyph_h > height:
            self.chars = 0  # frame too small for the text: draw nothing rather than a clipped lie

    def apply(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, capture_us: int) -> None:
        if not self.chars:
            return
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(capture_us / 1e6))
        row = y[self.y0 : self.y0 + self.glyph_h]
        for i, char in enumerate(text):
            x = self.x0 + i * self.glyph_w
            row[:, x : x + self.glyph_w] = self.glyphs[char]
        cy0, cx0 = self.y0 // 2, self.x0 // 2
        ch, cw = (self.glyph_h + 1) // 2, (self.chars * self.glyph_w + 1) // 2
        u[cy0 : cy0 + ch, cx0 : cx0 + cw] = NEUTRAL_C
        v[cy0 : cy0 + ch, cx0 : cx0 + cw] = NEUTRAL_C


class FrameFilter:
    """Masks then timestamp, in place on a yuv420p frame (call ``make_writable`` first on decoded frames)."""

    def __init__(self, width: int, height: int, masks: Sequence[Polygon] = (), timestamp: bool = False) -> None:
        self.width, self.height = width, height
        self.masks = PrivacyMasks(masks, width, height) if masks else None
        self.timestamp = TimestampOverlay(width, height) if timestamp else None
        self.seconds = 0.0  # time spent, for /health

    def __call__(self, frame: av.VideoFrame, capture_us: int) -> None:
        t0 = time.perf_counter()
        y, u, v = plane_view(frame, 0), plane_view(frame, 1), plane_view(frame, 2)
        if self.masks is not None:
            self.masks.apply(y, u, v)
        if self.timestamp is not None:
            self.timestamp.apply(y, u, v, capture_us)
        self.seconds += time.perf_counter() - t0


def build_filter(camera: CameraConfig, width: int | None = None, height: int | None = None) -> FrameFilter | None:
    """The camera's filter, or None when it has neither masks nor a timestamp (then nothing runs)."""
    if not camera.masks and not camera.timestamp:
        return None
    return FrameFilter(width or camera.width, height or camera.height, camera.masks, camera.timestamp)


def measure(width: int = 1280, height: int = 720, frames: int = 300) -> dict[str, float]:
    """Milliseconds per frame of each filter at ``width``x``height``."""
    poly = [(0.55, 0.1), (0.9, 0.15), (0.85, 0.6), (0.6, 0.5)]
    cases = {
        "rect mask (25% of frame)": FrameFilter(width, height, [((0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5))]),
        "polygon mask (~12% of frame)": FrameFilter(width, height, [poly]),
        "timestamp": FrameFilter(width, height, timestamp=True),
        "2 masks + timestamp": FrameFilter(width, height, [((0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)), poly], True),
    }
    frame = av.VideoFrame(width, height, "yuv420p")
    out = {}
    for name, f in cases.items():
        f(frame, 0)  # warm up
        t0 = time.perf_counter()
        for i in range(frames):
            f(frame, i * 66_666)
        out[name] = (time.perf_counter() - t0) / frames * 1000
    return out


if __name__ == "__main__":
    for label, ms in measure().items():
        print(f"{label:32s} {ms:.3f} ms per 1280x720 frame")
