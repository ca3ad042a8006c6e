"""Greedy non-maximum suppression per label, in numpy (the YOLO layout leaves it to us)."""

from __future__ import annotations

import numpy as np

MAX_CANDIDATES = 1000
"""Only the best this many boxes above the score floor go into NMS, so a frame of noise costs bounded time."""


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of ``box`` (x0, y0, x1, y1) with each row of ``boxes``; 0 where the union is empty."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    out = np.zeros(len(boxes), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float,
        limit: int = 100) -> list[int]:
    """Indices of the boxes kept, best score first: a box is dropped when it overlaps a better box of its own
    label by more than ``iou_threshold``. ``boxes`` is (N, 4) as x0, y0, x1, y1."""
    if len(boxes) == 0:
        return []
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    boxes = boxes.astype(np.float64, copy=False)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) >= limit:
            break
        suppressed |= (labels == labels[i]) & (iou_one_to_many(boxes[i], boxes) > iou_threshold)
    return keep
