"""``sht node --probe``: what this machine really has for a node.

Cameras (V4L2 capture devices, Picamera2 cameras when picamera2 imports),
encoders that really encode a frame (node/capture/encoders.py's probe, not FFmpeg's
list of compiled-in codecs) and the health sources that answer (shared/soc.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from node.capture.encoders import probe_all
from shared.soc import soc_reading

V4L2_ROOT = Path("/sys/class/video4linux")
# The Pi's codec, ISP and back-end nodes are V4L2 devices too, but no camera: say so instead of listing them bare.
NOT_A_CAMERA = ("codec", "isp", "pispbe", "hevc", "rpivid", "unicam-embedded", "rp1-cfe-embedded")


def v4l2_devices(root: Path = V4L2_ROOT) -> list[dict[str, Any]]:
    devices = []
    for entry in sorted(root.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            name = "?"
        lowered = name.lower()
        kind = "not a camera" if any(word in lowered for word in NOT_A_CAMERA) else "capture"
        devices.append({"source": f"v4l2:/dev/{entry.name}", "name": name, "kind": kind})
    return devices


def picamera2_cameras() -> dict[str, Any]:
    try:
        import picamera2  # noqa: F401  (only to learn whether it is there)
    except ImportError:
        return {"available": False, "detail": "picamera2 not installed (pip install '.[pi]' on a Pi)", "cameras": []}
    from node.sources.picamera2 import cameras_found

    found = cameras_found()
    return {"available": True, "detail": f"{len(found)} camera(s)",
            "cameras": [{"source": f"picamera2:{i}", "name": str(c.get("Model", "?")), "id": str(c.get("Id", ""))}
                        for i, c in enumerate(found)]}


def probe_machine() -> dict[str, Any]:
    h264, h265 = probe_all("h264"), probe_all("h265")
    soc = soc_reading().to_json()
    return {
        "cameras": {"v4l2": v4l2_devices(), "picamera2": picamera2_cameras()},
        "encoders": {"h264": [p.as_dict() for p in h264], "h265": [p.as_dict() for p in h265],
                     "chosen": {"h264": next((p.name for p in h264 if p.ok), None),
                                "h265": next((p.name for p in h265 if p.ok), None)}},
        "health": soc,
    }


def print_probe(result: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    cams = Table(title="Cameras")
    for col in ("source", "name", "kind"):
        cams.add_column(col)
    for dev in result["cameras"]["v4l2"]:
        cams.add_row(dev["source"], dev["name"], dev["kind"])
    pc = result["cameras"]["picamera2"]
    for cam in pc["cameras"]:
        cams.add_row(cam["source"], cam["name"], "Picamera2")
    if not cams.rows:
        cams.add_row("(none)", "no /dev/video* and no Picamera2 camera", "")
    cams.caption = escape(f"Picamera2: {pc['detail']}; also: file:PATH, url:rtsp://..., synthetic")
    console.print(cams)

    enc = Table(title="Encoders (each opened and made to encode one frame)")
    for col in ("codec", "encoder", "works", "why not", "ms"):
        enc.add_column(col)
    for codec in ("h264", "h265"):
        for p in result["encoders"][codec]:
            chosen = " (chosen)" if p["name"] == result["encoders"]["chosen"][codec] else ""
            enc.add_row(codec, p["name"] + chosen, "yes" if p["ok"] else "no", escape(p["detail"]), f"{p['ms']:.1f}")
    console.print(enc)

    h = result["health"]
    health = Table(title="Health sources")
    health.add_column("source")
    health.add_column("reading")
    src = h["sources"]
    health.add_row("board", h["model"] or "n/a")
    health.add_row("vcgencmd", "yes" if src["vcgencmd"] else "not available")
    health.add_row("thermal zones", "yes" if src["thermal_zone"] else "not available")
    health.add_row("NVML", "yes" if src["nvml"] else str(h["gpus"]))
    temp = h["temperature_c"]
    health.add_row("temperature", f"{temp:.1f} °C ({h['temperature_source']})" if temp is not None else "n/a")
    if h["throttled"] is not None:
        t = h["throttled"]
        health.add_row("throttled", f"{t['raw']} now: {', '.join(t['now']) or 'no'}; since boot: "
                       f"{', '.join(t['since_boot']) or 'no'}")
    if h["clocks_hz"] is not None:
        health.add_row("clocks", ", ".join(f"{k} {v / 1e6:.0f} MHz" if v is not None else f"{k} n/a"
                                           for k, v in h["clocks_hz"].items()))
    if h["gpu_mem_mb"] is not None:
        health.add_row("GPU memory", f"{h['gpu_mem_mb']} MB")
    console.print(health)
