"""H.265 against H.264: bitrate at equal quality (``just bench codecs``).

Both encoders see the same frames of the simulated camera (a static CCTV scene
with sensor noise and movers), with the node's GOP (1 s, no scene cuts) and one
thread each. Each sweeps its CRF; quality is the PSNR of the decoded luma
against the source (numpy, per frame, averaged). The saving is the
Bjøntegaard delta rate: the mean bitrate difference between the two
rate-quality curves over the PSNR range both cover (cubic fit of log rate over
PSNR, the usual BD-rate method). Two settings: the node's own (``ultrafast``,
``zerolatency``: what a node can afford in real time) and ``medium`` (what a
store-side re-encode could use). Encode speed is reported beside it, because
on a Pi it decides whether H.265 is possible at all.

Prints a table and rewrites the "Codecs" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from node.sources.base import plane_view
from node.sources.scenario import load_scenario
from node.sources.synthetic import SyntheticSource

SECTION = "## Codecs: H.265 vs H.264"
CRFS = {"libx264": (18, 22, 26, 30, 34), "libx265": (20, 24, 28, 32, 36)}
PRESETS = {"node": ("ultrafast", "zerolatency"), "medium": ("medium", None)}


@dataclass(frozen=True)
class Point:
    encoder: str
    preset: str
    crf: int
    bitrate_bps: float
    psnr_db: float
    encode_fps: float


def frames_of(scene: str, width: int, height: int, fps: int, count: int) -> list[av.VideoFrame]:
    """``NAME`` or ``NAME@NOISE`` (a built-in scenario, its sensor noise overridden) or ``lavfi:SOURCE``."""
    if scene.startswith("lavfi:"):
        frames = []
        with av.open(f"{scene[6:]}=size={width}x{height}:rate={fps}", format="lavfi") as c:
            for frame in c.decode(video=0):
                frames.append(frame.reformat(format="yuv420p"))
                if len(frames) == count:
                    break
        return frames
    name, _, noise = scene.partition("@")
    scenario = load_scenario(name)
    if noise:
        scenario = replace(scenario, noise=float(noise))
    source = SyntheticSource(width, height, fps, scenario)
    return [source.read(i) for i in range(count)]


def encode(frames: list[av.VideoFrame], encoder: str, preset: str, crf: int, fps: int) -> tuple[list[bytes], float]:
    ctx = cast(VideoCodecContext, av.CodecContext.create(encoder, "w"))
    ctx.width, ctx.height, ctx.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.gop_size = fps
    speed, tune = PRESETS[preset]
    options = {"preset": speed, "crf": str(crf)}
    if tune:
        options["tune"] = tune
    if encoder == "libx264":
        options |= {"threads": "1", "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0"}
    else:
        options["x265-params"] = f"keyint={fps}:min-keyint={fps}:scenecut=0:pools=1:frame-threads=1:log-level=error"
    ctx.options = options
    ctx.open()
    packets: list[bytes] = []
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        frame.pts = i
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets, time.perf_counter() - t0


def luma_psnr(frames: list[av.VideoFrame], packets: list[bytes], encoder: str) -> float:
    decoder = av.CodecContext.create("hevc" if encoder == "libx265" else "h264", "r")
    decoded: list[av.VideoFrame] = []
    for data in packets:
        decoded += decoder.decode(av.Packet(data))  # type: ignore[arg-type]
    decoded += decoder.decode(None)
    assert len(decoded) == len(frames), (len(decoded), len(frames))
    values = []
    for src, out in zip(frames, decoded, strict=True):
        diff = plane_view(src, 0).astype(np.float64) - out.to_ndarray()[: src.height].astype(np.float64)
        mse = float(np.mean(diff * diff))
        values.append(99.0 if mse == 0 else 10 * np.log10(255 * 255 / mse))
    return float(np.mean(values))


def monotonic(points: list[Point]) -> bool:
    """More bits, more quality: a curve where that fails (noise-dominated PSNR) cannot be compared."""
    ordered = sorted(points, key=lambda p: p.bitrate_bps)
    return all(b.psnr_db > a.psnr_db for a, b in zip(ordered, ordered[1:], strict=False))


def bd_rate(anchor: list[Point], test: list[Point]) -> float | None:
    """Bjøntegaard delta rate of ``test`` against ``anchor`` in percent (negative: ``test`` needs fewer bits).

    None when the curves do not overlap in PSNR or are not monotonic (then the fit means nothing).
    """
    if not (monotonic(anchor) and monotonic(test)):
        return None
    pa, ra = np.array([p.psnr_db for p in anchor]), np.log([p.bitrate_bps for p in anchor])
    pt, rt = np.array([p.psnr_db for p in test]), np.log([p.bitrate_bps for p in test])
    low, high = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if high <= low:
        return None
    fa, ft = np.polyint(np.polyfit(pa, ra, 3)), np.polyint(np.polyfit(pt, rt, 3))
    mean_a = (np.polyval(fa, high) - np.polyval(fa, low)) / (high - low)
    mean_t = (np.polyval(ft, high) - np.polyval(ft, low)) / (high - low)
    return float((np.exp(mean_t - mean_a) - 1) * 100)


def measure(scene: str, width: int, height: int, fps: int, count: int, presets: list[str]) -> list[Point]:
    frames = frames_of(scene, width, height, fps, count)
    points = []
    for preset in presets:
        for encoder, crfs in CRFS.items():
            for crf in crfs:
                packets, seconds = encode(frames, encoder, preset, crf, fps)
                bits = 8 * sum(len(p) for p in packets)
                points.append(Point(encoder, preset, crf, bits * fps / count, luma_psnr(frames, packets, encoder),
                                    count / seconds))
    return points


def render(results: dict[str, list[Point]], size: str, fps: int, count: int) -> str:
    lines = [SECTION, "", f"`python3 -m bench codecs` ({size}, {fps} fps, {count} frames of each simulated scene, "
             "GOP 1 s, one thread per encoder). BD-rate: the mean bitrate change of libx265 against libx264 at "
             "equal luma PSNR (negative = H.265 needs fewer bits).", "",
             "| scene | settings | BD-rate H.265 vs H.264 | libx264 encode fps | libx265 encode fps |",
             "|---|---|---|---|---|"]
    for scene, points in results.items():
        for preset in dict.fromkeys(p.preset for p in points):
            a = [p for p in points if p.preset == preset and p.encoder == "libx264"]
            t = [p for p in points if p.preset == preset and p.encoder == "libx265"]
            bd = bd_rate(a, t)
            verdict = "not comparable" if bd is None else f"{bd:+.1f} %"
            lines.append(f"| {scene} | {preset} ({'/'.join(x for x in PRESETS[preset] if x)}) | {verdict} | "
                         f"{np.mean([p.encode_fps for p in a]):.0f} | {np.mean([p.encode_fps for p in t]):.0f} |")
    lines += ["", "Rate-quality points (kbit/s @ dB):", ""]
    for scene, points in results.items():
        for preset in dict.fromkeys(p.preset for p in points):
            for enc in CRFS:
                row = ", ".join(f"crf {p.crf}: {p.bitrate_bps / 1000:.0f} @ {p.psnr_db:.2f}"
                                for p in points if p.preset == preset and p.encoder == enc)
                lines.append(f"- {scene}, {preset}, {enc}: {row}")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, title: str = SECTION) -> None:
    """Replace (or append) the section called ``title``, keeping the rest of the page."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(title + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench codecs", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--frames", type=int, default=50)
    # street@0.7: the simulated camera with the residual noise of a well-lit camera after the ISP's
    # denoise (its default sigma 2 is a dark scene: there PSNR measures the noise, not the codec);
    # mandelbrot: fine detail in constant motion, the hard case.
    p.add_argument("--scenes", nargs="*", default=["street@0.7", "street", "lavfi:mandelbrot"])
    p.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--output", default="docs/benchmarks.md")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args(argv)
    width, height = (int(x) for x in args.size.split("x"))
    results = {scene: measure(scene, width, height, args.fps, args.frames, args.presets) for scene in args.scenes}
    section = render(results, args.size, args.fps, args.frames)
    print(section)
    if not args.no_write:
        write_section(Path(args.output), section)
    return 0
