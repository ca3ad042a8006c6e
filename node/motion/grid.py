"""What a detector reports for one frame, and the cell-grid helpers both detectors share.

Both detectors work on a coarse grid of cells (16x16 pixels of a 720p frame:
the H.264 macroblock, and 4x4 pixels of the 320x180 luma image), so zones,
minimum area, speckle rejection and the bounding box are computed once, here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Fraction of the frame at which the score saturates: a person filling a tenth of
# the picture is as "motion" as it gets; the square root spreads small objects out.
SCORE_SATURATION = 0.10


@dataclass(frozen=True, slots=True)
class MotionSample:
    """One frame's verdict. ``score`` is 0 when less than ``min_area`` moved."""

    score: float  # 0..1
    bbox: tuple[float, float, float, float] | None  # normalised x, y, w, h of the moving cells
    active_fraction: float  # moving cells / cells inside the zones (before ``min_area``)

    @property
    def motion(self) -> bool:
        return self.score > 0.0


NO_MOTION = MotionSample(0.0, None, 0.0)


def despeckle(active: np.ndarray) -> np.ndarray:
    """Keep only cells with at least one active 4-neighbour: lone cells are noise, objects span several."""
    p = np.pad(active, 1)
    neighbours = p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return active & neighbours


def line3(ax: np.ndarray, ay: np.ndarray) -> np.ndarray:
    """Length of the mean vector over 3 cells in a column or in a row, whichever is longer.

    An edge one cell wide keeps its full strength along its own direction, where a 3x3 box would
    divide it by three; noise is still averaged over three cells."""
    px, py = np.pad(ax, 1), np.pad(ay, 1)
    cx, cy = px[1:-1, 1:-1], py[1:-1, 1:-1]
    column = np.hypot(px[:-2, 1:-1] + cx + px[2:, 1:-1], py[:-2, 1:-1] + cy + py[2:, 1:-1])
    row = np.hypot(px[1:-1, :-2] + cx + px[1:-1, 2:], py[1:-1, :-2] + cy + py[1:-1, 2:])
    out = np.maximum(column, row)
    out *= 1.0 / 3.0
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """Cells within one cell (8-neighbourhood) of a set cell."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    out = mask.copy()
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + h, dx:dx + w]
    return out


@dataclass(frozen=True)
class CellGeometry:
    """Where a grid of ``rows`` x ``cols`` cells of ``cell`` pixels sits in a ``width`` x ``height`` image."""

    width: int
    height: int
    cell: int
    rows: int
    cols: int

    def extents(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Normalised (x0, x1) per column and (y0, y1) per row, clipped to the picture."""
        xs = np.arange(self.cols + 1) * self.cell / self.width
        ys = np.arange(self.rows + 1) * self.cell / self.height
        xs, ys = np.minimum(xs, 1.0), np.minimum(ys, 1.0)
        return xs[:-1], xs[1:], ys[:-1], ys[1:]

    def bbox(self, active: np.ndarray) -> tuple[float, float, float, float]:
        rows = np.flatnonzero(active.any(axis=1))
        cols = np.flatnonzero(active.any(axis=0))
        x0 = float(cols[0] * self.cell / self.width)
        x1 = min(1.0, float((cols[-1] + 1) * self.cell / self.width))
        y0 = float(rows[0] * self.cell / self.height)
        y1 = min(1.0, float((rows[-1] + 1) * self.cell / self.height))
        return (x0, y0, x1 - x0, y1 - y0)

    def sample(self, active: np.ndarray, included: int, min_area: float) -> MotionSample:
        """Turn a mask of moving cells into a sample; ``included`` is how many cells the zones allow."""
        count = int(np.count_nonzero(active))
        if included == 0 or count == 0:
            return NO_MOTION
        fraction = count / included
        if fraction < min_area:
            return MotionSample(0.0, None, fraction)
        score = min(1.0, (fraction / SCORE_SATURATION) ** 0.5)
        return MotionSample(score, self.bbox(active), fraction)
