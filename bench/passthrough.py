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


def run_once(clip: Path, work: Path, seconds: float, motion: str) -> dict:
    cam_port, node_port = free_port(), free_port()
    url = f"http://127.0.0.1:{cam_port}/live.ts"
    camera = subprocess.Popen([ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                               "-i", str(clip), "-c", "copy", "-flush_packets", "1", "-f", "mpegts",
                               "-listen", "1", url], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = subprocess.Popen([sys.executable, "-m", "sht", "node", "--id", "bench", "--host", "127.0.0.1",
                             "--port", str(node_port), "--no-auth", "--spool", str(work / f"spool-{motion}"),
                             "--motion", motion, "--camera", f"cam0=url:{url}", "--log-level", "warning"],
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                cam = health(node_port)["cameras"]["cam0"]
                if cam["frames_encoded"] > 0:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not start streaming")
            time.sleep(0.2)
        time.sleep(2.0)  # past start-up (imports, first connect)
        before = health(node_port)["cameras"]["cam0"]
        c0, t0, f0 = cpu_seconds(node.pid), time.monotonic(), before["frames_encoded"]
        time.sleep(seconds)
        c1, t1 = cpu_seconds(node.pid), time.monotonic()
        cam = health(node_port)["cameras"]["cam0"]
        return {"motion": motion, "cpu_percent": 100 * (c1 - c0) / (t1 - t0), "fps": (cam["frames_encoded"] - f0)
                / (t1 - t0), "bitrate_bps": cam["bitrate_bps"], "mode": cam["mode"],
                "size": f"{cam['width']}x{cam['height']}",
                "thread_percent": 100 * (cam["thread_cpu_s"] - before["thread_cpu_s"]) / (t1 - t0)}
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        camera.kill()
        camera.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench passthrough", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--bitrate", default="4M")
    p.add_argument("--seconds", type=float, default=20.0)
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
        rows = [run_once(clip, work, args.seconds, motion) for motion in ("off", "luma")]
    lines = [SECTION, "", f"`python3 -m bench passthrough`: a {args.size} {args.fps} fps H.264 camera at {args.bitrate}"
             f"bit/s (an ffmpeg process serving MPEG-TS over HTTP on loopback), recorded by a node process for "
             f"{args.seconds:.0f} s (segments muxed and spooled; no store). CPU of the whole node process "
             f"(user + system), in % of one core, on this machine ({os.cpu_count()} cores).", "",
             "| motion detection | mode | node process, % of a core | its capture thread | fps | bitrate |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['motion']} | {r['mode']} | {r['cpu_percent']:.1f} | {r['thread_percent']:.1f} | "
                     f"{r['fps']:.1f} | {r['bitrate_bps'] / 1e6:.1f} Mbit/s |")
    lines += ["", "With motion off nothing is decoded: demux, one bitstream filter, the fan-out and the MP4 "
              "remux are all the node does per frame. The luma detector needs pictures, so it decodes the "
              "stream: that is the cost of motion detection on a passed-through camera, not of pass-through."]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        from bench.codecs import write_section

        write_section(Path(args.output), section, SECTION)
    return 0
