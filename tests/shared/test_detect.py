"""shared/detect: the SSD and YOLO layouts on tiny models built here with onnx.helper, so pre- and
post-processing are checked exactly; the errors; the built-in person model loads, is the file we shipped and runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from shared.detect import Detection, DetectorError  # noqa: E402
from shared.detect.detector import Detector, provider_for  # noqa: E402
from shared.detect.model import BUILTIN_MODEL, BUILTIN_SHA256, check_builtin, sha256_file  # noqa: E402
from shared.detect.preprocess import PAD, Placement, prepare  # noqa: E402

LABELS = ["person", "car"]


def save_model(path: Path, input_name: str, elem: int, input_shape: list, outputs: dict[str, np.ndarray],
               depends: tuple[str, np.ndarray] | None = None) -> Path:
    """A model whose outputs are constants; ``depends`` = (output, M) adds mean(input) * M to that output, so
    what the detector fed the model shows in the result."""
    nodes, inits, outs = [], [], []
    if elem == TensorProto.UINT8:
        nodes.append(helper.make_node("Cast", [input_name], ["_x"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", [input_name], ["_x"]))
    nodes.append(helper.make_node("ReduceMean", ["_x"], ["_mean"], keepdims=0))
    for name, value in outputs.items():
        const = f"{name}_const"
        inits.append(numpy_helper.from_array(value.astype(np.float32), const))
        mask = depends[1] if depends and depends[0] == name else np.zeros_like(value)
        inits.append(numpy_helper.from_array(mask.astype(np.float32), f"{name}_mask"))
        nodes.append(helper.make_node("Mul", ["_mean", f"{name}_mask"], [f"{name}_dep"]))
        nodes.append(helper.make_node("Add", [const, f"{name}_dep"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(input_name, elem, input_shape)], outs,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_labels(tmp_path: Path, labels: list[str], name: str = "labels.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(labels) + "\n")
    return path


# YOLO candidates in input pixels of a 64x64 model: cx, cy, w, h, score(person), score(car)
YOLO_ROWS = np.array([
    [32, 32, 32, 16, 0.90, 0.00],  # A: kept
    [33, 32, 32, 16, 0.80, 0.10],  # B: same place and label as A, IoU ~0.94 → suppressed
    [32, 32, 32, 16, 0.05, 0.85],  # C: same place, other label → kept
    [10, 20, 4, 4, 0.30, 0.00],    # D: under min_score
    [56, 40, 8, 8, 0.50, 0.00],    # E: kept; its score gets mean(input) in the "depends" model
], dtype=np.float32)


def yolo_model(tmp_path: Path, channels_first: bool, depends: bool = False) -> Path:
    out = YOLO_ROWS.T[None] if channels_first else YOLO_ROWS[None]
    mask = np.zeros_like(out)
    if depends:
        mask[0, 4, 4] = 1.0  # E's person score: row 4, column 4 either way round
    name = f"yolo-{'cf' if channels_first else 'cl'}{'-dep' if depends else ''}.onnx"
    return save_model(tmp_path / name, "images", TensorProto.FLOAT, [1, 3, 64, 64], {"output0": out},
                      ("output0", mask) if depends else None)


@pytest.mark.parametrize("channels_first", [False, True])
def test_yolo_layout_letterbox_nms_and_boxes_exactly(tmp_path, channels_first):
    det = Detector(yolo_model(tmp_path, channels_first), write_labels(tmp_path, LABELS))
    assert det.info.layout.name == "yolo" and det.info.layout.channels_first is channels_first
    assert det.info.layout.input_size == (64, 64) and det.info.layout.resize == "letterbox"
    # a 128x64 frame letterboxes to 64x32 at y=16: input pixel (x, y) is frame fraction (x/64, (y-16)/32)
    found = det.detect(np.zeros((64, 128, 3), np.uint8))
    assert [(d.label, round(d.score, 6)) for d in found] == [("person", 0.9), ("car", 0.85), ("person", 0.5)]
    assert found[0].box == pytest.approx((16 / 64, 8 / 32, 32 / 64, 16 / 32))
    assert found[1].box == found[0].box
    assert found[2].box == pytest.approx((52 / 64, (36 - 16) / 32, 8 / 64, 8 / 32))
    assert det.detect(np.zeros((64, 128, 3), np.uint8), min_score=0.95) == []
    assert [d.label for d in det.detect(np.zeros((64, 128, 3), np.uint8), min_score=0.2)][-1] == "person"


@pytest.mark.parametrize("channels_first", [False, True])
def test_yolo_input_is_rgb_0_to_1_with_grey_letterbox_padding(tmp_path, channels_first):
    det = Detector(yolo_model(tmp_path, channels_first, depends=True), write_labels(tmp_path, LABELS))
    found = det.detect(np.full((64, 128, 3), 51, np.uint8))
    # half the input is the frame (51), half the padding (114): E's score is 0.5 + mean/255
    expected = 0.5 + (51 + PAD) / 2 / 255
    assert [d for d in found if d.score < 0.85][0].score == pytest.approx(expected, abs=1e-5)
    square = det.detect(np.full((64, 64, 3), 255, np.uint8))  # no padding: mean 1.0 → E scores 1.5, first
    assert square[0].score == pytest.approx(1.5) and square[0].box == pytest.approx((52 / 64, 36 / 64, 8 / 64, 8 / 64))


def test_yolo_takes_a_yuv420p_video_frame(tmp_path):
    av = pytest.importorskip("av")
    det = Detector(yolo_model(tmp_path, False), write_labels(tmp_path, LABELS))
    frame = av.VideoFrame.from_ndarray(np.zeros((64, 128, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
    found = det.detect(frame)
    assert found[0].box == pytest.approx((16 / 64, 8 / 32, 32 / 64, 16 / 32))


def test_yolo_labels_from_ultralytics_metadata(tmp_path):
    path = yolo_model(tmp_path, True)
    model = onnx.load(str(path))
    helper.set_model_props(model, {"names": "{0: 'person', 1: 'car'}"})
    onnx.save(model, str(path))
    assert Detector(path).info.labels == ("person", "car")


def ssd_model(tmp_path: Path, classes: list[float] | None = None) -> Path:
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.9, 0.7], [0.0, 0.0, 0.1, 0.1]]])
    scores = np.array([[0.95, 0.40, 0.70, 0.99]])  # the 4th is past num_detections
    cls = np.array([classes or [1, 1, 2, 1]])
    return save_model(tmp_path / "ssd.onnx", "image_tensor:0", TensorProto.UINT8, ["b", "h", "w", 3],
                      {"num_detections:0": np.array([3.0]), "detection_boxes:0": boxes,
                       "detection_scores:0": scores, "detection_classes:0": cls})


def test_ssd_layout_boxes_classes_and_num_detections(tmp_path):
    det = Detector(ssd_model(tmp_path), write_labels(tmp_path, LABELS))
    layout = det.info.layout
    assert (layout.name, layout.input_size, layout.resize) == ("ssd", (300, 300), "stretch")
    found = det.detect(np.zeros((720, 1280, 3), np.uint8))
    assert found == [Detection("person", pytest.approx(0.95), pytest.approx((0.2, 0.1, 0.4, 0.4))),
                     Detection("car", pytest.approx(0.70), pytest.approx((0.5, 0.5, 0.2, 0.4)))]
    assert [d.label for d in det.detect(np.zeros((10, 10, 3), np.uint8), min_score=0.3)] == ["person", "car", "person"]


def test_ssd_class_past_the_labels_file_is_an_error(tmp_path):
    det = Detector(ssd_model(tmp_path, classes=[1, 1, 3, 1]), write_labels(tmp_path, LABELS))
    with pytest.raises(DetectorError, match=r"class 3, but the labels file has 2 label\(s\)"):
        det.detect(np.zeros((8, 8, 3), np.uint8))


def test_prepare_letterbox_and_stretch_exactly():
    frame = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    rgb, place = prepare(frame, 8, 8, "letterbox")
    assert place == Placement(4, 2, 0, 2, 8, 4)
    assert (rgb[:2] == PAD).all() and (rgb[6:] == PAD).all()
    assert (rgb[2:6] == np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)).all()
    rgb, place = prepare(frame, 8, 8, "stretch")
    assert place == Placement(4, 2, 0, 0, 8, 8) and (rgb == np.repeat(np.repeat(frame, 4, 0), 2, 1)).all()
    with pytest.raises(DetectorError, match="RGB uint8"):
        prepare(np.zeros((4, 4), np.uint8), 8, 8)
    with pytest.raises(DetectorError, match="av.VideoFrame or an RGB numpy array"):
        prepare(b"garbage", 8, 8)


# ---- bad input: one line naming the file and the fault


def test_missing_and_corrupt_model_files(tmp_path):
    labels = write_labels(tmp_path, LABELS)
    with pytest.raises(DetectorError, match=r"model file .*nope.onnx does not exist"):
        Detector(tmp_path / "nope.onnx", labels)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(DetectorError) as err:
        Detector(bad, labels)
    assert f"model file {bad} cannot be loaded" in str(err.value) and "\n" not in str(err.value)


def test_outputs_of_neither_layout(tmp_path):
    path = save_model(tmp_path / "cls.onnx", "x", TensorProto.FLOAT, [1, 3, 8, 8], {"logits": np.zeros((1, 10))})
    with pytest.raises(DetectorError, match=r"cls.onnx .*\(logits float \[1, 10\]\) match neither the SSD layout"):
        Detector(path, write_labels(tmp_path, LABELS))


def test_labels_that_do_not_fit_the_model(tmp_path):
    model = yolo_model(tmp_path, False)
    with pytest.raises(DetectorError, match=r"labels file .*three.txt: the output is \[1, 5, 6\], which does not fit "
                                            r"3 label\(s\) \(4 \+ 3 = 7"):
        Detector(model, write_labels(tmp_path, ["a", "b", "c"], "three.txt"))
    with pytest.raises(DetectorError, match=r"labels file .*missing.txt does not exist"):
        Detector(model, tmp_path / "missing.txt")
    with pytest.raises(DetectorError, match=r"labels file .*empty.txt is empty"):
        Detector(model, write_labels(tmp_path, [""], "empty.txt"))
    with pytest.raises(DetectorError, match=r"labels file .*gap.txt: line 2 is blank"):
        Detector(model, write_labels(tmp_path, ["a", "", "b"], "gap.txt"))
    with pytest.raises(DetectorError, match=r"model file .*yolo-cl.onnx needs a labels file"):
        Detector(model)


def test_devices(tmp_path):
    assert provider_for("cpu") == "CPUExecutionProvider"
    with pytest.raises(DetectorError, match="device 'gpu' is unknown"):
        provider_for("gpu")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(DetectorError, match="device cuda: onnxruntime here offers only .*onnxruntime-gpu"):
            Detector(yolo_model(tmp_path, False), write_labels(tmp_path, LABELS), device="cuda")


def test_a_changed_builtin_model_is_caught(tmp_path):
    copy = tmp_path / "person-ssdlite.onnx"
    copy.write_bytes(b"not the model")
    with pytest.raises(DetectorError, match=r"model file .* has SHA-256 [0-9a-f]{64}, expected "
                                            f"{BUILTIN_SHA256}: reinstall"):
        check_builtin(copy)
    with pytest.raises(DetectorError, match="does not exist: reinstall"):
        check_builtin(tmp_path / "gone.onnx")


# ---- the built-in person model (package data)


def test_builtin_person_model_loads_matches_and_runs():
    assert sha256_file(BUILTIN_MODEL) == BUILTIN_SHA256
    det = Detector()
    assert det.info.builtin and det.info.labels == ("person",) and det.info.layout.name == "ssd"
    assert det.info.layout.input_size == (300, 300) and det.info.threads == 1
    frame = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    found = det.detect(frame, min_score=0.0)
    assert all(d.label == "person" and 0 <= d.score <= 1 for d in found)
    assert all(0 <= v <= 1 for d in found for v in d.box)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        det.detect(frame)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[2] < 0.25  # ~10 ms here; generous for a loaded CI machine


# ---- sht detect --probe


def test_probe_cli(tmp_path, capsys):
    from sht.cli import main

    assert main(["detect", "--probe", "--json", "--model", str(yolo_model(tmp_path, True)),
                 "--labels", str(write_labels(tmp_path, LABELS))]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["layout"] == "yolo" and result["input_size"] == [64, 64] and result["provider"] in result["providers"]
    assert result["labels"] == LABELS and result["inference_ms_p50"] > 0
    assert main(["detect", "--probe", "--model", str(tmp_path / "none.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.onnx does not exist" in err


def test_onnxruntime_is_loaded_only_when_detecting():
    code = ("import sys, shared.detect, node.app, store.app, sht.cli; sht.cli.build_parser(); "
            "print('onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
