"""``sht detect``: the object detector on this machine. ``--probe`` prints what it would run; ``--store URL`` runs
it as a worker of the store (sht/detect_worker.py). onnxruntime is loaded only when the command runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any


def add_model_flags(parser: Any, prefix: str = "") -> None:
    """--model, --labels, --device, --threads (``prefix="detect-"``: ``sht store``'s --detect-model ...): which
    detector runs, the same flags wherever one does."""
    from shared.detect.detector import PROVIDERS

    parser.add_argument(f"--{prefix}model", metavar="PATH.onnx", help="an SSD- or YOLO-layout ONNX model (default: "
                        "the built-in person model; docs/objects.md)")
    parser.add_argument(f"--{prefix}labels", metavar="PATH.txt", help="the model's labels, one a line in class order")
    parser.add_argument(f"--{prefix}device", default="cpu", choices=tuple(PROVIDERS),
                        help="execution provider (default cpu); an error if this onnxruntime lacks it")
    parser.add_argument(f"--{prefix}threads", type=int, default=1, help="intra-op threads (default 1)")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("detect", help="object detection: --probe prints providers, the model and a timed run; "
                       "--store URL works for a store")
    p.add_argument("--probe", action="store_true",
                   help="print onnxruntime's providers, the one used, the model, its layout, input size and the "
                   "p50 of 20 inferences on a blank frame, then exit")
    add_model_flags(p)
    p.add_argument("--json", action="store_true", help="with --probe: print JSON")
    p.add_argument("--store", metavar="URL[,URL...]", help="work for this store (e.g. ws://nas:8100) or for every "
                   "store of a cluster at once (ws://nas1:8100,ws://nas2:8100): a store sends frames of cameras in "
                   "motion, this machine finds the objects; reconnects when a store goes away")
    p.add_argument("--token", default=os.environ.get("SHT_TOKEN"), help="with --store: a detector token (default "
                   "$SHT_TOKEN; `sht token create --role detector` on the store makes one)")
    p.add_argument("--ca", help="with --store: CA certificate to verify a wss:// store with")
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


def _fail(message: str) -> int:
    print(f"sht: error: {message}", file=sys.stderr)
    return 2


def cmd_worker(args: argparse.Namespace) -> int:
    from shared.detect import DetectorError
    from shared.detect.detector import Detector
    from shared.security import client_ssl
    from shared.store_list import StoreListError, parse_store_list
    from shared.urls import ws_url
    from sht.detect_worker import WorkerFatal, say, serve_stores, worker_hello

    if args.threads < 1:
        return _fail(f"--threads must be 1 or more, got {args.threads}")
    if not args.token:
        return _fail("sht detect --store needs a detector token: give --token or set SHT_TOKEN (make one on the "
                     "store with `sht token create --role detector`)")
    try:
        detector = Detector(args.model, args.labels, device=args.device, threads=args.threads)
        hello = worker_hello(detector, args.device)
        stores = parse_store_list(args.store)
        for store in stores:  # a bad URL or CA file refused now, before any link starts
            client_ssl(ws_url(store), args.ca)
    # ValueError: a bad URL; OSError: an unreadable CA file
    except (DetectorError, StoreListError, ValueError, OSError) as exc:
        return _fail(str(exc))
    say(f"{hello.model} on {args.device} ({detector.info.provider}, {args.threads} thread(s)), labels "
        f"{', '.join(hello.labels[:8])}{' ...' if len(hello.labels) > 8 else ''}")
    try:
        asyncio.run(serve_stores(stores, args.token, args.ca, detector, hello))
    except WorkerFatal as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    if args.probe == bool(args.store):
        return _fail("sht detect: give --probe (print what this machine would run) or --store URL (work for a "
                     "store)")
    if args.store:
        return cmd_worker(args)
    from shared.detect import DetectorError
    from shared.detect.detector import probe

    try:
        result = probe(args.model, args.labels, device=args.device, threads=args.threads)
    except DetectorError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0
