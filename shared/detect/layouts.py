"""The two output layouts a model may have, told apart from its inputs and outputs (docs/objects.md).

SSD (TF Object Detection API): one uint8 RGB input ``[1, H, W, 3]``; outputs named ``num_detections`` [1],
``detection_boxes`` [1, N, 4] as y0, x0, y1, x1 fractions of the input, ``detection_scores`` [1, N] and
``detection_classes`` [1, N] (1-based: line 1 of the labels file is class 1). The model has done NMS.

YOLO (Ultralytics v8 and later): one float32 RGB input ``[1, 3, H, W]`` scaled 0..1; one output
``[1, N, 4+classes]`` or ``[1, 4+classes, N]``: cx, cy, w, h in input pixels, then one score per class
(0-based, line 1 of the labels file is class 0). No objectness column; we do the NMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.detect.nms import nms
from shared.detect.preprocess import Placement
from shared.detect.result import Detection, DetectorError

SSD_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
DEFAULT_SIZE = {"ssd": (300, 300), "yolo": (640, 640)}
NEITHER = ("match neither the SSD layout (outputs num_detections, detection_boxes, detection_scores, "
           "detection_classes) nor the YOLO layout (one output [1, N, 4+classes] or [1, 4+classes, N])")


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as onnxruntime describes it (dims are ints, or names/None when dynamic)."""

    name: str
    type: str
    shape: tuple[Any, ...]

    def describe(self) -> str:
        dims = ", ".join(str(d) if isinstance(d, int) else "?" for d in self.shape)
        return f"{self.name} {self.type.removeprefix('tensor(').removesuffix(')')} [{dims}]"


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


@dataclass(frozen=True)
class Layout:
    name: str
    input_name: str
    input_size: tuple[int, int]  # width, height
    resize: str
    output_names: tuple[str, ...]
    channels_first: bool | None = None  # YOLO: [1, 4+classes, N]; None: decided on the first output

    def feed(self, rgb: np.ndarray) -> np.ndarray:
        if self.name == "ssd":
            return rgb[None]
        return (rgb.transpose(2, 0, 1)[None].astype(np.float32)) * np.float32(1 / 255)

    def describe(self) -> str:
        w, h = self.input_size
        if self.name == "ssd":
            return f"ssd, input {w}x{h} uint8 RGB NHWC, {self.resize}"
        orient = {True: "[1, 4+classes, N]", False: "[1, N, 4+classes]", None: "orientation decided at run time"}
        return f"yolo, input {w}x{h} float32 RGB NCHW 0..1, {self.resize}, output {orient[self.channels_first]}"

    def decode(self, outputs: Sequence[np.ndarray], place: Placement, labels: Sequence[str], min_score: float,
               iou: float, limit: int, where: str) -> list[Detection]:
        if self.name == "ssd":
            return _decode_ssd(outputs, place, labels, min_score, limit, self.input_size, where)
        return _decode_yolo(outputs[0], self.channels_first, place, labels, min_score, iou, limit, where)


def _decode_ssd(outputs: Sequence[np.ndarray], place: Placement, labels: Sequence[str], min_score: float,
                limit: int, size: tuple[int, int], where: str) -> list[Detection]:
    num, boxes, scores, classes = (np.asarray(o) for o in outputs)
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 2 or classes.shape != scores.shape:
        raise DetectorError(f"{where}: SSD outputs have shapes boxes {boxes.shape}, scores {scores.shape}, "
                            f"classes {classes.shape}; expected [1, N, 4], [1, N], [1, N]")
    n = min(int(num.reshape(-1)[0]) if num.size else 0, scores.shape[1])
    b, s, c = boxes[0, :n].astype(np.float64), scores[0, :n].astype(np.float64), classes[0, :n]
    keep = np.flatnonzero(s >= min_score)[:limit]
    keep = keep[np.argsort(-s[keep], kind="stable")]
    w, h = size
    rows = place.to_frame(b[keep, 1] * w, b[keep, 0] * h, b[keep, 3] * w, b[keep, 2] * h)
    found = []
    for row, i in zip(rows, keep, strict=True):
        cls = int(round(float(c[i])))
        if not 1 <= cls <= len(labels):
            raise DetectorError(f"{where}: the model gave class {cls}, but the labels file has {len(labels)} "
                                "label(s) (SSD classes are 1-based: line 1 is class 1)")
        found.append(Detection(labels[cls - 1], float(s[i]), tuple(float(v) for v in row)))  # type: ignore[arg-type]
    return found


def _decode_yolo(out: np.ndarray, channels_first: bool | None, place: Placement, labels: Sequence[str],
                 min_score: float, iou: float, limit: int, where: str) -> list[Detection]:
    out = np.asarray(out)
    attrs = 4 + len(labels)
    if out.ndim != 3 or out.shape[0] != 1:
        raise DetectorError(f"{where}: the YOLO output has shape {out.shape}, expected [1, N, {attrs}] "
                            f"or [1, {attrs}, N]")
    if channels_first is None:
        channels_first = out.shape[1] == attrs
    rows = out[0].T if channels_first else out[0]
    if rows.shape[1] != attrs:
        raise DetectorError(f"{where}: the output has shape {list(out.shape)}, which does not fit "
                            f"{len(labels)} label(s) (4 + {len(labels)} = {attrs} values a box)")
    class_scores = rows[:, 4:]
    cls = np.argmax(class_scores, axis=1)
    score = class_scores[np.arange(len(rows)), cls].astype(np.float64)
    keep = np.flatnonzero(score >= min_score)
    if len(keep) == 0:
        return []
    cx, cy, bw, bh = (rows[keep, k].astype(np.float64) for k in range(4))
    corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    sel = np.asarray(nms(corners, score[keep], cls[keep], iou, limit), dtype=np.intp)
    kept = keep[sel]
    boxes = place.to_frame(corners[sel, 0], corners[sel, 1], corners[sel, 2], corners[sel, 3])
    return [Detection(labels[int(cls[i])], float(score[i]), tuple(float(v) for v in row))  # type: ignore[arg-type]
            for i, row in zip(kept, boxes, strict=True)]


def choose_layout(where: str, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                  labels: Sequence[str], input_size: tuple[int, int] | None = None,
                  resize: str | None = None) -> Layout:
    """The layout of a model from its inputs and outputs, or a DetectorError saying why it fits neither."""
    outs = ", ".join(o.describe() for o in outputs) or "none"
    if len(inputs) != 1:
        raise DetectorError(f"{where}: has {len(inputs)} inputs; a detector takes one image input")
    inp = inputs[0]
    by_name = {o.name.split(":")[0]: o.name for o in outputs}
    if all(n in by_name for n in SSD_OUTPUTS):
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or inp.shape[3] != 3:
            raise DetectorError(f"{where}: SSD outputs but input {inp.describe()}; the SSD layout takes uint8 "
                                "[1, H, W, 3]")
        size = input_size or (_static(inp.shape[2]) or DEFAULT_SIZE["ssd"][0],
                              _static(inp.shape[1]) or DEFAULT_SIZE["ssd"][1])
        return Layout("ssd", inp.name, size, resize or "stretch", tuple(by_name[n] for n in SSD_OUTPUTS))
    if len(outputs) == 1 and len(outputs[0].shape) == 3:
        if inp.type != "tensor(float)" or len(inp.shape) != 4 or inp.shape[1] != 3:
            raise DetectorError(f"{where}: a YOLO output but input {inp.describe()}; the YOLO layout takes "
                                "float32 [1, 3, H, W]")
        size = input_size or (_static(inp.shape[3]) or DEFAULT_SIZE["yolo"][0],
                              _static(inp.shape[2]) or DEFAULT_SIZE["yolo"][1])
        attrs = 4 + len(labels)
        a, b = (_static(d) for d in outputs[0].shape[1:])
        if a == attrs:
            channels_first: bool | None = True
        elif b == attrs:
            channels_first = False
        elif a is not None and b is not None:
            raise DetectorError(f"{where}: the output is [1, {a}, {b}], which does not fit {len(labels)} "
                                f"label(s) (4 + {len(labels)} = {attrs} values a box)")
        else:
            channels_first = None
        return Layout("yolo", inp.name, size, resize or "letterbox", (outputs[0].name,), channels_first)
    raise DetectorError(f"{where}: its outputs ({outs}) {NEITHER}")
