"""Luma-difference motion detection on a small grey image (the Pi ISP's ``lores`` stream).

Per frame, on a grid of 4x4-pixel cells (16x16 of a 720p frame):

1. Cell means: averaging 16 pixels divides sensor noise by 4 before anything
   is thresholded, and shrinks the work to ~3600 numbers.
2. Difference against a running background (an exponential moving average).
3. Global illumination: the median difference over the zones is the change of
   light (clouds, auto-exposure, dusk); it is subtracted, so only local change
   remains. Moving objects rarely cover half the picture, so the median holds.
4. Threshold per cell at ``max(floor, k * noise)``, where ``noise`` is the
   scene's own noise level (a robust, smoothed median absolute deviation), and
   both ``floor`` and ``k`` fall as sensitivity rises.
5. Speckle rejection: a cell counts only if a 4-neighbour also moved.
6. Background update: the light change is followed everywhere; other change is
   learnt with a 3 s time constant, except under foreground, which is frozen
   while it keeps changing from frame to frame (a passing person leaves no
   ghost behind) and absorbed quickly once it has been still for a second (a
   parked car, or the ghost of an object that vanished in place, stops being
   "motion" ~1.5 s later, not minutes later).

Cost: ~0.2 ms a frame, decimation from 720p included (``just bench motion`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from node.motion.grid import NO_MOTION, CellGeometry, MotionSample, despeckle
from node.motion.zones import Zone, zone_mask

CELL = 4  # pixels of the small image per cell side
LORES_WIDTH = 320  # the width the node decimates the Y plane to (about)
BACKGROUND_TAU_S = 3.0  # how fast the background follows unexplained local change
STILL_S = 1.0  # foreground unchanged this long is no longer motion ...
ABSORB_TAU_S = 0.25  # ... and is learnt into the background this fast
NOISE_ALPHA = 0.05  # smoothing of the per-frame noise estimate
MAD_TO_SIGMA = 1.4826


def lores_step(width: int) -> int:
    """The decimation step that turns a ``width``-wide Y plane into roughly 320 columns."""
    return max(1, round(width / LORES_WIDTH))


def decimate(y_plane: np.ndarray, step: int) -> np.ndarray:
    """What the ISP's lores stream would give: every ``step``-th pixel, as a view (no copy)."""
    return y_plane[::step, ::step]


def lores_size(width: int, height: int) -> tuple[int, int]:
    step = lores_step(width)
    return -(-width // step), -(-height // step)


def sensitivity_threshold(sensitivity: float) -> tuple[float, float]:
    """(floor in luma steps of a cell mean, multiple of the noise level) for a sensitivity 0..1."""
    s = min(1.0, max(0.0, sensitivity))
    return 1.5 + 10.0 * (1.0 - s), 3.0 + 8.0 * (1.0 - s)


def block_sums(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sums of CELL x CELL blocks. Strided slices and adds: ~6x faster than ``reshape().sum()``
    on axes this short, and they take a decimated view without copying it first."""
    img = image[: rows * CELL, : cols * CELL]
    acc = img[:, 0::CELL].astype(np.uint16)
    for j in range(1, CELL):
        acc += img[:, j::CELL]
    out = acc[0::CELL].copy()
    for i in range(1, CELL):
        out += acc[i::CELL]
    return out


class LumaDetector:
    """Motion in a small luma image against a running background. Not thread-safe; one per camera."""

    needs = "luma"

    def __init__(self, width: int, height: int, sensitivity: float = 0.5, min_area: float = 0.0005,
                 zones: Sequence[Zone] = (), fps: float = 15.0) -> None:
        if width < 2 * CELL or height < 2 * CELL:
            raise ValueError(f"luma image {width}x{height} is too small (at least {2 * CELL}x{2 * CELL})")
        self.width, self.height = width, height
        self.geometry = CellGeometry(width, height, CELL, height // CELL, width // CELL)
        self.min_area = min_area
        self.sensitivity = sensitivity
        self.zones = tuple(zones)
        self.include = zone_mask(self.zones, self.geometry)
        self._included = int(np.count_nonzero(self.include))
        self._fast = 1.0 - np.exp(-1.0 / (BACKGROUND_TAU_S * fps))
        self._absorb = 1.0 - np.exp(-1.0 / (ABSORB_TAU_S * fps))
        self._still_frames = max(1, round(STILL_S * fps))
        self._background: np.ndarray | None = None
        self._previous = np.zeros((self.geometry.rows, self.geometry.cols), np.float32)
        self._still = np.zeros((self.geometry.rows, self.geometry.cols), np.int32)
        self._noise = 0.0

    @property
    def sensitivity(self) -> float:
        return self._sensitivity

    @sensitivity.setter
    def sensitivity(self, value: float) -> None:
        """A runtime setting: takes effect on the next frame, the background is kept."""
        self._sensitivity = float(value)
        self._floor, self._k = sensitivity_threshold(value)

    def reset(self) -> None:
        """Forget the background (after a gap in the stream, or the camera was moved)."""
        self._background = None
        self._still[:] = 0
        self._noise = 0.0

    def detect_frame(self, y_plane: np.ndarray) -> MotionSample:
        """Convenience for a full-size Y plane: decimate it to this detector's size, then detect."""
        return self.detect(decimate(y_plane, lores_step(y_plane.shape[1])))

    def detect(self, luma: np.ndarray) -> MotionSample:
        if luma.shape != (self.height, self.width):
            raise ValueError(f"expected a {self.width}x{self.height} luma image, got {luma.shape[1]}x{luma.shape[0]}")
        g = self.geometry
        cells = block_sums(luma, g.rows, g.cols).astype(np.float32)
        cells *= 1.0 / (CELL * CELL)
        bg = self._background
        previous, self._previous = self._previous, cells
        if bg is None:
            self._background = cells.copy()
            return NO_MOTION
        diff = cells - bg
        inside = diff[self.include]
        if inside.size == 0:
            return NO_MOTION
        half = inside.size // 2
        offset = float(np.partition(inside, half)[half])  # global light change
        residual = diff - offset
        magnitude = np.abs(residual)
        deviation = np.abs(inside - offset)
        mad = float(np.partition(deviation, half)[half]) * MAD_TO_SIGMA
        self._noise = mad if self._noise == 0.0 else self._noise + NOISE_ALPHA * (mad - self._noise)
        threshold = max(self._floor, self._k * self._noise)
        # Frame-to-frame change (light change removed) tells a moving object from a still one.
        change = cells - previous
        change -= float(np.partition(change[self.include], half)[half])
        self._still = np.where(np.abs(change) > 0.5 * threshold, 0, np.minimum(self._still + 1, self._still_frames))
        settled = self._still >= self._still_frames
        foreground = magnitude > 0.5 * threshold
        active = despeckle((magnitude > threshold) & self.include & ~settled)
        rate = np.where(foreground, np.where(settled, np.float32(self._absorb), np.float32(0.0)),
                        np.float32(self._fast))
        bg += np.float32(self._fast * offset) + rate * residual
        return g.sample(active, self._included, self.min_area)
