"""``sht detect``: the object detector on this machine. Today ``--probe``; the worker (``--store URL``) is
issue 15's next step. onnxruntime is loaded only when the command runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("detect", help="object detection: --probe prints providers, the model and a timed run")
    p.add_argument("--probe", action="store_true",
                   help="print onnxruntime's providers, the one used, the model, its layout, input size and the "
                   "p50 of 20 inferences on a blank frame, then exit")
    p.add_argument("--model", metavar="PATH.onnx", help="an SSD- or YOLO-layout ONNX model (default: the built-in "
                   "person model; docs/objects.md)")
    p.add_argument("--labels", metavar="PATH.txt", help="the model's labels, one a line in class order")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "openvino", "tensorrt"),
                   help="execution provider (default cpu); an error if this onnxruntime lacks it")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--json", action="store_true", help="with --probe: print JSON")
    p.set_defaults(func=cmd_detect)


def _print(result: dict[str, Any]) -> None:
    used = result["provider"]
    providers = ", ".join(f"{p} (used)" if p == used else p for p in result["providers"])
    model = result["model"] + (f" (built-in, SHA-256 {result['sha256']} ok)" if result["builtin"] else "")
    labels = result["labels"]
    shown = ", ".join(labels[:8]) + (f", ... ({len(labels)} in all)" if len(labels) > 8 else "")
    rows = [
        ("onnxruntime", f"{result['onnxruntime']}: {providers}"),
        ("device", f"{result['device']} -> {used}, {result['threads']} intra-op thread(s)"),
        ("model", model),
        ("labels", f"{result['labels_file'] or 'from the model metadata'}: {shown}"),
        ("layout", result["layout_detail"]),
        ("input", "x".join(str(v) for v in result["input_size"])),
        ("inference", f"p50 {result['inference_ms_p50']:.2f} ms, max {result['inference_ms_max']:.2f} ms "
                      f"({result['runs']} runs on a blank frame)"),
    ]
    for key, value in rows:
        print(f"{key:<12}{value}")


def cmd_detect(args: argparse.Namespace) -> int:
    if not args.probe:
        print("sht: error: sht detect: only --probe exists yet (the worker, --store URL, is not built)",
              file=sys.stderr)
        return 2
    from shared.detect import DetectorError
    from shared.detect.detector import probe

    try:
        result = probe(args.model, args.labels, device=args.device, threads=args.threads)
    except DetectorError as exc:
        print(f"sht: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0
