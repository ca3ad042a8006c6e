"""``Detector``: one ONNX Runtime session, its layout, labels and execution provider, chosen at start.

onnxruntime is imported here, inside functions, so ``import shared.detect`` alone never loads it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.detect.layouts import Layout, TensorInfo, choose_layout
from shared.detect.model import (
    BUILTIN_LABELS,
    BUILTIN_MODEL,
    BUILTIN_SHA256,
    check_builtin,
    labels_from_metadata,
    read_labels,
)
from shared.detect.preprocess import RESIZE_MODES, prepare
from shared.detect.result import Detection, DetectorError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
PACKAGES = {"cuda": "onnxruntime-gpu", "tensorrt": "onnxruntime-gpu with TensorRT",
            "openvino": "onnxruntime-openvino"}


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def provider_for(device: str) -> str:
    """The execution provider for ``device`` (cpu, cuda, openvino, tensorrt), or a DetectorError when this
    onnxruntime does not offer it."""
    if device not in PROVIDERS:
        raise DetectorError(f"device {device!r} is unknown: choose one of {', '.join(PROVIDERS)}")
    provider = PROVIDERS[device]
    offered = available_providers()
    if provider not in offered:
        raise DetectorError(f"device {device}: onnxruntime here offers only {', '.join(offered)}; "
                            f"{provider} needs {PACKAGES.get(device, 'another onnxruntime build')}")
    return provider


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    labels_path: Path | None  # None: the labels came from the model's own metadata
    labels: tuple[str, ...]
    layout: Layout
    provider: str
    threads: int
    sha256: str | None  # the built-in model's, checked at load; None for a model the operator brings

    @property
    def builtin(self) -> bool:
        return self.sha256 is not None


class Detector:
    """Finds objects in frames. Not thread-safe: one thread calls ``detect`` (ONNX Runtime's own threads,
    ``threads`` intra-op, do the work)."""

    def __init__(self, model: str | Path | None = None, labels: str | Path | None = None, *, device: str = "cpu",
                 threads: int = 1, min_score: float = 0.5, iou: float = 0.45, max_detections: int = 100,
                 input_size: tuple[int, int] | None = None, resize: str | None = None) -> None:
        if threads < 1:
            raise DetectorError(f"intra-op threads must be 1 or more, got {threads}")
        if resize is not None and resize not in RESIZE_MODES:
            raise DetectorError(f"resize {resize!r} is unknown: choose {' or '.join(RESIZE_MODES)}")
        provider = provider_for(device)
        sha256: str | None = None
        if model is None:
            path = BUILTIN_MODEL
            sha256 = check_builtin(path, BUILTIN_SHA256)
            labels = BUILTIN_LABELS if labels is None else labels
        else:
            path = Path(model)
            if not path.is_file():
                raise DetectorError(f"model file {path} does not exist")
        self._session = self._open(path, provider, threads)
        label_names: tuple[str, ...] | None
        labels_path = Path(labels) if labels is not None else None
        if labels_path is not None:
            label_names = read_labels(labels_path)
        else:
            label_names = labels_from_metadata(dict(self._session.get_modelmeta().custom_metadata_map or {}))
            if label_names is None:
                raise DetectorError(f"model file {path} needs a labels file (--labels PATH.txt: one label a line, "
                                    "in class order)")
        where = f"model file {path}" + (f" with labels file {labels_path}" if labels_path else "")
        inputs = [TensorInfo(i.name, i.type, tuple(i.shape)) for i in self._session.get_inputs()]
        outputs = [TensorInfo(o.name, o.type, tuple(o.shape)) for o in self._session.get_outputs()]
        layout = choose_layout(where, inputs, outputs, label_names, input_size, resize)
        self.info = ModelInfo(path, labels_path, label_names, layout, provider, threads, sha256)
        self.min_score, self.iou, self.max_detections = min_score, iou, max_detections
        self._where = where

    @staticmethod
    def _open(path: Path, provider: str, threads: int) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no warnings on stderr for every node it cannot place
        providers = [provider] if provider == PROVIDERS["cpu"] else [provider, PROVIDERS["cpu"]]
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind classes: InvalidProtobuf, Fail, ...
            raise DetectorError(f"model file {path} cannot be loaded: {_first_line(exc)}") from None
        if session.get_providers()[0] != provider:
            raise DetectorError(f"model file {path}: {provider} did not start (onnxruntime fell back to "
                                f"{session.get_providers()[0]}); check the device's libraries and driver")
        return session

    def run(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The raw outputs for an input picture of exactly the model's size."""
        try:
            return list(self._session.run(list(self.info.layout.output_names),
                                          {self.info.layout.input_name: self.info.layout.feed(rgb)}))
        except Exception as exc:
            raise DetectorError(f"{self._where}: inference failed: {_first_line(exc)}") from None

    def detect(self, frame: Any, min_score: float | None = None) -> list[Detection]:
        """Objects in ``frame`` (an av.VideoFrame or an RGB uint8 array), best score first."""
        layout = self.info.layout
        rgb, place = prepare(frame, *layout.input_size, mode=layout.resize)
        outputs = self.run(rgb)
        return layout.decode(outputs, place, self.info.labels, self.min_score if min_score is None else min_score,
                             self.iou, self.max_detections, self._where)

    def time_blank(self, runs: int = 20) -> list[float]:
        """Milliseconds of ``runs`` inferences on a blank input picture, after one warm-up."""
        w, h = self.info.layout.input_size
        rgb = np.zeros((h, w, 3), dtype=np.uint8)
        self.run(rgb)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run(rgb)
            times.append((time.perf_counter() - t0) * 1000)
        return times


def probe(model: str | Path | None = None, labels: str | Path | None = None, device: str = "cpu",
          threads: int = 1, runs: int = 20) -> dict[str, Any]:
    """What ``sht detect --probe`` prints: providers, the one used, the model, its layout and a timed run."""
    detector = Detector(model, labels, device=device, threads=threads)
    info = detector.info
    times = detector.time_blank(runs)
    return {
        "onnxruntime": onnxruntime_version(),
        "providers": available_providers(),
        "device": device,
        "provider": info.provider,
        "threads": threads,
        "model": str(info.path),
        "builtin": info.builtin,
        "sha256": info.sha256,
        "labels_file": str(info.labels_path) if info.labels_path else None,
        "labels": list(info.labels),
        "layout": info.layout.name,
        "layout_detail": info.layout.describe(),
        "input_size": list(info.layout.input_size),
        "runs": runs,
        "inference_ms_p50": round(statistics.median(times), 3),
        "inference_ms_max": round(max(times), 3),
    }
