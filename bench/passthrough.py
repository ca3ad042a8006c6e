"""CPU of a node passing an H.264 camera through (``just bench passthrough``).

An ffmpeg process plays a 1080p H.264 clip as a live MPEG-TS stream over HTTP
on loopback (``-re``, ``-listen 1``, stream copy: the "camera"); a real node
process records it (segments muxed and spooled, no store) with motion
detection off, then with the luma detector (which makes the node decode the
stream). The node's CPU time (user + system, from /proc) over the run, in
percent of one core. Rewrites the "Pass-through" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SECTION = "## Pass-through CPU"
WARMUP_S = 15.0
WINDOWS = 3


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
        return json.loads(r.read())


def camera_server(clip: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/live.ts"
    proc = subprocess.Popen([ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                             "-i", str(clip), "-c", "copy", "-flush_packets", "1", "-f", "mpegts",
                             "-listen", "1", url], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, url


def run_once(clip: Path, work: Path, seconds: float, motion: str, cameras: int = 1) -> dict:
    """One node process with ``cameras`` pass-through cameras (each its own ffmpeg server)."""
    node_port = free_port()
    servers = [camera_server(clip) for _ in range(cameras)]
    names = [f"cam{i}" for i in range(cameras)]
    flags = [arg for i, (_, url) in enumerate(servers) for arg in ("--camera", f"cam{i}=url:{url}")]
    node = subprocess.Popen([sys.executable, "-m", "sht", "node", "--id", "bench", "--host", "127.0.0.1",
                             "--port", str(node_port), "--no-auth", "--spool", str(work / f"spool-{motion}-{cameras}"),
                             "--motion", motion, *flags, "--log-level", "warning"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                cams = health(node_port)["cameras"]
                if all(cams[n]["frames_encoded"] > 0 for n in names):
                    break
            except (OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not start streaming")
            time.sleep(0.2)
        # Past start-up: imports, the first connect, and the first segments (the muxer's first use loads code).
        time.sleep(WARMUP_S)
        before = health(node_port)["cameras"]
        windows = []
        t_start = time.monotonic()
        for _ in range(WINDOWS):  # consecutive windows of the same run: the median shrugs off a noisy one
            c0, t0 = cpu_seconds(node.pid), time.monotonic()
            time.sleep(seconds / WINDOWS)
            windows.append(100 * (cpu_seconds(node.pid) - c0) / (time.monotonic() - t0))
        after = health(node_port)["cameras"]
        wall = time.monotonic() - t_start
        cam = after["cam0"]
        return {"motion": motion, "cameras": cameras, "cpu_percent": sorted(windows)[len(windows) // 2],
                "windows": windows,
                "fps": min((after[n]["frames_encoded"] - before[n]["frames_encoded"]) / wall for n in names),
                "bitrate_bps": cam["bitrate_bps"], "mode": cam["mode"], "size": f"{cam['width']}x{cam['height']}",
                "thread_percent": 100 * sum(after[n]["thread_cpu_s"] - before[n]["thread_cpu_s"] for n in names)
                / wall / cameras}
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        for proc, _ in servers:
            proc.kill()
            proc.wait()


def demux_floor(clip: Path, seconds: float) -> float:
    """% of a core that reading the same stream costs with PyAV alone (FFmpeg's MPEG-TS demux and the packet
    copy, nothing of ours): the part of a pass-through camera no node code can remove."""
    import av

    proc, url = camera_server(clip)
    try:
        time.sleep(0.5)
        with av.open(url) as container:
            stream = container.streams.video[0]
            t0, c0 = time.monotonic(), time.thread_time()
            for packet in container.demux(stream):
                bytes(packet)
                if time.monotonic() - t0 > seconds:
                    break
            return 100 * (time.thread_time() - c0) / (time.monotonic() - t0)
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench passthrough", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--bitrate", default="4M")
    p.add_argument("--seconds", type=float, default=60.0, help="measured per run, in 3 windows (median)")
    p.add_argument("--output", default="docs/benchmarks.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "camera.ts"
        subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"testsrc2=size={args.size}:rate={args.fps}", "-t", "10", "-c:v", "libx264",
                        "-preset", "veryfast", "-b:v", args.bitrate, "-g", str(args.fps), "-bf", "0",
                        "-pix_fmt", "yuv420p", str(clip)], check=True)
        rows = [run_once(clip, work, args.seconds, "off", n) for n in (1, 2, 4)]
        rows.append(run_once(clip, work, args.seconds, "luma", 1))
        floor = demux_floor(clip, args.seconds)
    section = report(rows, floor, args)
    print(section)
    if not args.no_write:
        from bench.codecs import write_section

        write_section(Path(args.output), section, SECTION)
    return 0


def report(rows: list[dict], floor: float, args: argparse.Namespace) -> str:
    lines = [SECTION, "", f"`python3 -m bench passthrough`: {args.size} {args.fps} fps H.264 cameras at "
             f"{args.bitrate}bit/s (each an ffmpeg process serving MPEG-TS over HTTP on loopback), recorded by one "
             f"node process (segments muxed and spooled; no store). CPU of the whole node process (user + system), in "
             f"% of one core, on this machine ({os.cpu_count()} cores): after {WARMUP_S:.0f} s of warm-up, the median "
             f"of {WINDOWS} consecutive windows of {args.seconds / WINDOWS:.0f} s (each window in brackets).", "",
             "| cameras | motion detection | mode | node process, % of a core | per camera | each capture thread | "
             "fps (each) | bitrate (each) | target: < 1 % per camera |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = r["cpu_percent"] / r["cameras"]
        verdict = ("pass" if per < 1.0 else "FAIL") if r["motion"] == "off" else ""
        spread = ", ".join(f"{w:.2f}" for w in r.get("windows", []))
        lines.append(f"| {r['cameras']} | {r['motion']} | {r['mode']} | {r['cpu_percent']:.2f} ({spread}) | "
                     f"{per:.2f} | {r['thread_percent']:.2f} | {r['fps']:.1f} | {r['bitrate_bps'] / 1e6:.1f} Mbit/s | "
                     f"{verdict} |")
    off = {r["cameras"]: r["cpu_percent"] for r in rows if r["motion"] == "off"}
    each = (off[max(off)] - off[1]) / (max(off) - 1)
    lines += ["", f"From 1 to {max(off)} cameras the node's CPU grew by {each:.2f} % of a core per camera. Reading the "
              f"stream with PyAV alone (FFmpeg's MPEG-TS demux and a copy of each packet, none of our code) costs "
              f"{floor:.2f} % of a core: the floor of any pass-through in Python over FFmpeg. The warm-up matters: "
              "measured from 2 s after the first frame (so still inside start-up: imports, the first connect and "
              "segments), a 1-camera node read 1.5-1.75 % in earlier runs of this benchmark.", "",
              "With motion off nothing is decoded: demux, the parameter-set check on keyframes, the fan-out and the "
              "MP4 remux are all the node does per frame. The luma detector needs pictures, so it decodes the "
              "stream: that is the cost of motion detection on a passed-through camera, not of pass-through."]
    return "\n".join(lines) + "\n"
