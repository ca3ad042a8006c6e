"""Motion detection from the H.264 stream's own motion vectors (FFmpeg ``export_mvs``).

The camera's encoded access units are decoded a second time with
``flags2=+export_mvs``; each P-frame then carries its vectors as frame side
data (``MOTION_VECTORS``: per block ``w``, ``h``, ``dst_x``, ``dst_y``,
``motion_x``, ``motion_y``, ``motion_scale``). Vectors are parsed from the
bitstream, so the pixels are not needed: with ``skip_idct`` and
``skip_loop_filter`` the decoder stops reconstructing them and the vectors stay
bit-identical (the benchmark checks), which is what makes a second decode cheap.

Scoring, per 16x16 macroblock cell:

1. The area-weighted mean vector of the cell's partitions (intra blocks: none),
   its length clipped: to 8 pixels per frame for the fast average, 1.5 for
   the slow one (which is there for slow movers only). In flat, dark areas the
   encoder picks long random vectors (nothing to match); unclipped, one such
   frame kept the averages above threshold for several frames: an event.
2. Exponential averages over P-frames, *of the vectors, not their lengths*.
   An encoder fed sensor noise picks short vectors in random directions that
   cancel out; a moving object's vectors agree with themselves a frame later
   and survive. Two time constants: 0.15 s follows fast objects, 1 s
   accumulates the 0-or-1-pixel vectors of slow ones (weighted 2.5x).
3. A line filter, not a box: the mean of 3 cells along a row or a column,
   whichever is longer. What a whole-pixel search sees of a slow, plain object
   is its edges, lines one macroblock wide; a 3x3 box cut their strength to a
   third, a line keeps it while still averaging three cells of noise.
4. Threshold each field (fast, slow) at ``max(floor, k * median)`` over the
   zones. A change of light over a smooth gradient (sky, a wall) makes the
   encoder "see" coherent motion over large areas; the median term lifts the
   threshold on such frames, while a person, far less than half the picture,
   barely moves it (a high percentile would).
5. Speckle rejection, then persistence: a cell counts only if a cell at most
   one away was above threshold in the previous P-frame too. Heavy noise in
   low light throws up small coherent clusters at random places; an object
   is where it was a frame ago, give or take a macroblock (a fast one leaves
   a trail in the 0.15 s average, so it overlaps itself too).
6. Zones (applied before any averaging, so a swaying tree cannot leak into
   the cells around it), minimum area: as luma.

Keyframes carry no vectors: the previous frame's sample is repeated across them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from node.motion.grid import NO_MOTION, CellGeometry, MotionSample, despeckle, dilate, line3
from node.motion.zones import Zone, zone_mask

MB = 16  # H.264 macroblock side, pixels
FAST_TAU_S = 0.15  # temporal averaging of each cell's vector, for objects crossing cells quickly
SLOW_TAU_S = 1.0  # ... and for slow ones
SLOW_GAIN = 2.5  # the slow average's vectors are short: weigh them up before the same floor
FAST_CLIP_PX = 8.0  # longest vector (pixels per frame) one cell may add to the fast average ...
SLOW_CLIP_PX = 1.5  # ... and to the slow one


def sensitivity_threshold(sensitivity: float) -> tuple[float, float]:
    """(floor in pixels per frame at the coded resolution, multiple of the frame's median) for 0..1."""
    s = min(1.0, max(0.0, sensitivity))
    return 0.4 + 1.2 * (1.0 - s), 6.0 + 8.0 * (1.0 - s)


def open_decoder(skip_reconstruction: bool) -> VideoCodecContext:
    ctx = cast(VideoCodecContext, av.CodecContext.create("h264", "r"))
    options = {"flags2": "+export_mvs", "flags": "+low_delay"}
    if skip_reconstruction:
        # Pixels are not looked at: skip the inverse transform and the deblocking filter.
        options.update({"skip_idct": "all", "skip_loop_filter": "all"})
    ctx.options = options
    ctx.thread_count = 1  # frame threads would delay every frame; slices gain nothing at this size
    return ctx


class MotionVectorDetector:
    """Motion from a camera's H.264 access units. Not thread-safe; one per camera."""

    needs = "h264"

    def __init__(self, width: int, height: int, sensitivity: float = 0.5, min_area: float = 0.0005,
                 zones: Sequence[Zone] = (), fps: float = 15.0, skip_reconstruction: bool = True) -> None:
        self.width, self.height = width, height
        rows, cols = -(-height // MB), -(-width // MB)
        self.geometry = CellGeometry(width, height, MB, rows, cols)
        self.min_area = min_area
        self.sensitivity = sensitivity
        self.zones = tuple(zones)
        self.include = zone_mask(self.zones, self.geometry)
        self._included = int(np.count_nonzero(self.include))
        self._fast = float(1.0 - np.exp(-1.0 / (FAST_TAU_S * fps)))
        self._slow = float(1.0 - np.exp(-1.0 / (SLOW_TAU_S * fps)))
        self._skip = skip_reconstruction
        self._decoder = open_decoder(skip_reconstruction)
        self._synced = False  # seen a keyframe: before it, P-frames have no reference
        # Averaged vectors per cell: fast x, fast y, slow x, slow y.
        self._avg = np.zeros((4, rows, cols), np.float32)
        self._previous = np.zeros((rows, cols), bool)  # cells above threshold in the last P-frame
        self._last = NO_MOTION
        self.decode_errors = 0
        self.vectors = 0  # vectors in the last P-frame (for tests and the benchmark)

    @property
    def sensitivity(self) -> float:
        return self._sensitivity

    @sensitivity.setter
    def sensitivity(self, value: float) -> None:
        self._sensitivity = float(value)
        self._floor, self._k = sensitivity_threshold(value)

    def reset(self) -> None:
        """Start over with a fresh decoder (a new stream, or the encoder was restarted)."""
        self._decoder = open_decoder(self._skip)
        self._synced = False
        self._avg[:] = 0
        self._previous[:] = False
        self._last = NO_MOTION

    def feed(self, access_unit: bytes, keyframe: bool, capture_us: int) -> MotionSample:
        """One access unit (Annex-B) in stream order; returns this frame's sample."""
        if keyframe:
            self._synced = True
        if not self._synced:
            return NO_MOTION
        try:
            frames = self._decoder.decode(av.Packet(access_unit))
        except av.FFmpegError:
            # A damaged unit: keep the last verdict; the next keyframe resynchronises.
            self.decode_errors += 1
            return self._last
        for frame in frames:
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                self._last = self._score(side.to_ndarray())  # type: ignore[attr-defined]
        return self._last

    def _score(self, mv: np.ndarray) -> MotionSample:
        g = self.geometry
        self.vectors = len(mv)
        n = g.rows * g.cols
        area = mv["w"].astype(np.float32) * mv["h"] * (1.0 / (MB * MB))
        area /= np.maximum(mv["motion_scale"], 1)  # quarter-pel units -> pixels, folded into the weight
        row = np.clip(mv["dst_y"].astype(np.int32) >> 4, 0, g.rows - 1)
        col = np.clip(mv["dst_x"].astype(np.int32) >> 4, 0, g.cols - 1)
        cell = row * g.cols + col
        vx = np.bincount(cell, mv["motion_x"] * area, n).reshape(g.rows, g.cols).astype(np.float32)
        vy = np.bincount(cell, mv["motion_y"] * area, n).reshape(g.rows, g.cols).astype(np.float32)
        # Zones apply before the spatial mean, or a swaying tree would leak into the cells around it.
        vx *= self.include
        vy *= self.include
        # One wild vector (a flat, dark patch: anything matches) must not hold the averages up for frames.
        length = np.maximum(np.hypot(vx, vy), np.float32(1e-6))
        fast = np.minimum(np.float32(1.0), np.float32(FAST_CLIP_PX) / length)
        slow = np.minimum(np.float32(1.0), np.float32(SLOW_CLIP_PX) / length)
        avg = self._avg
        avg[0] += self._fast * (vx * fast - avg[0])
        avg[1] += self._fast * (vy * fast - avg[1])
        avg[2] += self._slow * (vx * slow - avg[2])
        avg[3] += self._slow * (vy * slow - avg[3])
        include = self.include
        above = np.zeros_like(include)
        # Each field against its own median: a frame-wide false motion (light over a gradient) shows in
        # one of them first, and must not lift the other's threshold.
        for field in (line3(avg[0], avg[1]), SLOW_GAIN * line3(avg[2], avg[3])):
            inside = field[include]
            if inside.size == 0:
                return NO_MOTION
            rank = inside.size // 2
            above |= field > max(self._floor, self._k * float(np.partition(inside, rank)[rank]))
        moving = despeckle(above & include)
        # Persistence: noise clusters pop up at random places, an object is near where it just was.
        active = moving & dilate(self._previous)
        self._previous = moving
        return g.sample(active, self._included, self.min_area)
