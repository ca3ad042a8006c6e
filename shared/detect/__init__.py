"""Object detection with ONNX Runtime: the built-in person model or any SSD- or YOLO-layout model.

``shared/detect`` is used by the store (the embedded detector) and by ``sht detect`` (the probe, later the
worker); docs/objects.md describes the model, the two layouts and how to add a model. Importing this package
loads numpy only: onnxruntime is imported when a ``Detector`` is made (``shared.detect.detector``), so a
process that never detects never loads it.
"""

from shared.detect.result import Detection, DetectorError

__all__ = ["Detection", "DetectorError"]
