"""NMS properties: no two kept boxes of one label overlap above the threshold; kept scores never rise."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.detect.nms import nms


def iou(a: np.ndarray, b: np.ndarray) -> float:  # written apart from shared/detect/nms.py on purpose
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


box = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(0, 50), st.floats(0, 50))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(box, st.floats(0, 1), st.integers(0, 2)), max_size=40), st.floats(0.05, 0.95))
def test_nms_keeps_no_overlapping_pair_of_one_label_and_sorts_by_score(items, threshold):
    boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _, _ in items], dtype=np.float64).reshape(-1, 4)
    scores = np.array([s for _, s, _ in items], dtype=np.float64)
    labels = np.array([c for _, _, c in items], dtype=np.int64)
    keep = nms(boxes, scores, labels, threshold, limit=1000)
    assert len(set(keep)) == len(keep)
    kept_scores = [scores[i] for i in keep]
    assert kept_scores == sorted(kept_scores, reverse=True)
    for n, i in enumerate(keep):
        for j in keep[n + 1:]:
            if labels[i] == labels[j]:
                assert iou(boxes[i], boxes[j]) <= threshold + 1e-9
    # every dropped box overlaps a kept, better-or-equal box of its label
    for d in set(range(len(items))) - set(keep):
        assert any(labels[k] == labels[d] and scores[k] >= scores[d] and iou(boxes[k], boxes[d]) > threshold - 1e-9
                   for k in keep)


def test_nms_limit_and_empty():
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], dtype=np.float64)
    assert nms(boxes, np.array([0.1, 0.3, 0.2]), np.zeros(3, np.int64), 0.5, limit=2) == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5) == []
