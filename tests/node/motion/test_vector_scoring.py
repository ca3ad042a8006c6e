"""The motion-vector detector's scoring on hand-made vector fields (no codec): line filter, clipping,
persistence."""

from __future__ import annotations

import numpy as np

from node.motion import MotionVectorDetector
from node.motion.grid import dilate, line3

W, H = 320, 176  # 20 x 11 macroblocks
MV = np.dtype([("w", "u1"), ("h", "u1"), ("dst_x", "i2"), ("dst_y", "i2"),
               ("motion_x", "i4"), ("motion_y", "i4"), ("motion_scale", "u2")])


def field(cells: list[tuple[int, int]], dx: float, dy: float = 0.0) -> np.ndarray:
    """One 16x16 partition per listed (row, col) moving by (dx, dy) pixels, quarter-pel coded."""
    mv = np.zeros(len(cells), MV)
    for i, (r, c) in enumerate(cells):
        mv[i] = (16, 16, c * 16 + 8, r * 16 + 8, round(dx * 4), round(dy * 4), 4)
    return mv


def moving(d: MotionVectorDetector, frames: list[np.ndarray]) -> list[bool]:
    return [d._score(mv).motion for mv in frames]


def test_line3_keeps_an_edge_one_cell_wide_at_full_strength():
    ax = np.zeros((5, 5), np.float32)
    ax[:, 2] = 1.0  # a vertical edge moving right by one pixel
    out = line3(ax, np.zeros_like(ax))
    assert out[1:4, 2].tolist() == [1.0, 1.0, 1.0]  # a 3x3 box would give 1/3
    assert np.allclose(out[0, 2], 2 / 3) and np.allclose(out[2, 1], 1 / 3)
    single = np.zeros((3, 3), np.float32)
    single[1, 1] = 3.0
    assert np.allclose(line3(single, np.zeros_like(single)), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    # Opposite vectors cancel: noise in random directions averages out.
    ax[:, 3] = -1.0
    assert np.allclose(line3(ax, np.zeros_like(ax))[2, 2], 1.0)


def test_dilate_reaches_the_eight_neighbours_only():
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    out = dilate(m)
    assert out.sum() == 9 and out[1:4, 1:4].all()
    corner = np.zeros((3, 3), bool)
    corner[0, 0] = True
    assert dilate(corner).tolist() == [[True, True, False], [True, True, False], [False, False, False]]


def test_an_edge_one_macroblock_wide_is_motion_sooner_the_faster_it_moves():
    edge = [(r, 5) for r in range(2, 9)]  # 7 macroblocks tall, one wide: all a whole-pixel search sees
    got = {}
    for speed in (2.0, 1.0, 0.5, 0.25):
        d = MotionVectorDetector(W, H, fps=10)
        seq = moving(d, [field(edge, speed)] * 60)
        got[speed] = seq.index(True) if True in seq else None
    # 2 px a frame: the fast average crosses the 1 px floor on frame 1, persistence confirms it on frame 2.
    # Slower, only the slow average (1 s, weighted 2.5x: a 0.4 px floor) gets there: 1 px a frame on
    # frame 6, 0.5 px on frame 17; 0.25 px a frame never does, at the default sensitivity.
    assert got == {2.0: 2, 1.0: 6, 0.5: 17, 0.25: None}


def test_clusters_popping_up_in_different_places_are_not_motion():
    d = MotionVectorDetector(W, H, fps=10)
    empty = field([], 0.0)
    blobs = [field([(r, c), (r, c + 1), (r + 1, c), (r + 1, c + 1)], 4.0)
             for r, c in ((1, 1), (7, 14), (2, 9), (8, 3), (4, 17), (1, 6))]
    assert moving(d, [f for b in blobs for f in (b, empty, empty)]) == [False] * 18


def test_one_frame_of_wild_vectors_does_not_last_three_frames():
    # Flat dark patches let the encoder pick any vector: 40 px in one frame, nothing after. Clipped to
    # 6 px, the average falls under the floor after two frames, short of an event's three.
    d = MotionVectorDetector(W, H, fps=10)
    patch = [(4, 8), (4, 9), (4, 10), (5, 8), (5, 9), (5, 10)]
    got = moving(d, [field(patch, 0.0, 40.0)] + [field([], 0.0)] * 5)
    assert got.count(True) < 3 and not any(got[3:])
