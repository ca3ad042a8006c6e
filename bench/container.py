"""``just bench container``: the image of deploy/Containerfile (issue 19): its size, what it is made of, the build
time from a warm base, and container start → ``/health`` 200 for a store and a node, with podman.

1. The stand-in base and the wheels as the container test makes them (tests/system/podman.py: mmdebstrap's
   Debian bookworm with python3 3.11 tagged python:3.11-slim-bookworm, the dependencies from host-made wheels),
   cached; the base imported into a throwaway podman storage.
2. The build timed (``podman build --pull=never --format docker --layers=false``): ``--builds`` times, each from
   the same warm base with nothing of the image cached, so the figure is the whole build (copy, venv, pip install
   from the wheels, commit) and not a layer-cache hit.
3. The image's size (podman's, uncompressed) and the largest parts of its /opt/sht venv (``du`` in a container).
4. ``--starts`` times each: ``podman run -d`` of a store (host network, an empty bind-mounted /data), then of a
   node with two 640x360 simulated cameras given a token, timed from the ``podman run`` call to the first
   ``/health`` 200; each container stopped (its STOPSIGNAL) and removed before the next.

Prints the figures and replaces the "## Container image" section of docs/benchmarks.md (``--output -``: print only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.request import urlopen

from bench.report import cpu_model, replace_section, source_commit
from tests.system.conftest import free_port
from tests.system.podman import Podman, base_rootfs, build_context, missing_tools, wheelhouse

SECTION = "## Container image"
TAG = "localhost/sht-cctv:bench"


def until_health(podman: Podman, name: str, url: str, t0: float, timeout: float = 60) -> float:
    while time.monotonic() - t0 < timeout:
        try:
            with urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{name}: no /health 200 in {timeout} s: {podman('logs', name, check=False).stderr[-2000:]}")


def start_times(podman: Podman, work: Path, starts: int) -> tuple[list[float], list[float]]:
    stores, nodes = [], []
    for i in range(starts):
        data = work / f"data{i}"
        data.mkdir()
        sp, np_ = free_port(), free_port()
        t0 = time.monotonic()
        podman("run", "-d", "--name", f"store{i}", "--network", "host", "-v", f"{data}:/data:U", TAG, "store",
               "--root", "/data", "--host", "127.0.0.1", "--port", str(sp), "--detect", "off")
        stores.append(until_health(podman, f"store{i}", f"http://127.0.0.1:{sp}", t0))
        token = podman("exec", f"store{i}", "sht", "token", "create", "--root", "/data", "--role", "node",
                       "--subject", "node0").stdout.strip()
        t0 = time.monotonic()
        podman("run", "-d", "--name", f"node{i}", "--network", "host", "--env", "SHT_TOKEN", TAG, "node", "--id",
               "node0", "--host", "127.0.0.1", "--port", str(np_), "--store", f"ws://127.0.0.1:{sp}", "--spool",
               "/spool", "--size", "640x360", "--camera", "cam0=synthetic", "--camera", "cam1=synthetic:busy",
               env={"SHT_TOKEN": token})
        nodes.append(until_health(podman, f"node{i}", f"http://127.0.0.1:{np_}", t0))
        podman("stop", "--time", "40", f"node{i}", f"store{i}", timeout=90)
        podman("rm", "--volumes", f"node{i}", f"store{i}")
    return stores, nodes


def venv_parts(podman: Podman) -> list[tuple[str, int]]:
    out = podman("run", "--rm", "--entrypoint", "sh", TAG, "-c",
                 "cd /opt/sht/lib/python3.11/site-packages && du -sk * | sort -n | tail -12; du -sk /opt/sht").stdout
    rows = [line.split("\t") for line in out.strip().splitlines()]
    return [(name, int(kb) * 1024) for kb, name in rows]


def section(info: dict[str, str], size: int, base: int, builds: list[float], parts: list[tuple[str, int]],
            stores: list[float], nodes: list[float]) -> str:
    mb = 1e6
    total_venv = dict((n, b) for n, b in parts)["/opt/sht"]
    biggest = ", ".join(f"{n} {b / mb:.0f}" for n, b in sorted(parts, key=lambda p: -p[1]) if n != "/opt/sht")
    med = statistics.median
    heavy = sum(b for n, b in parts if n.split(".")[0] in ("onnxruntime", "av", "numpy"))
    return "\n".join([
        "`just bench container` (bench/container.py). Issue 19: the image of deploy/Containerfile, built and run "
        "with podman as tests/system/test_container.py does (a stand-in for `python:3.11-slim-bookworm` made with "
        "mmdebstrap, about the real one's size; the dependencies from wheels built on the host).",
        "",
        "| what | measured |",
        "|---|---|",
        f"| image size (uncompressed, podman) | **{size / mb:.0f} MB**: the base {base / mb:.0f} MB + the venv "
        f"/opt/sht {total_venv / mb:.0f} MB (`du`: disk blocks, so a little more than its share) (target ≤ 250 MB: "
        f"{'met' if size <= 250 * mb else 'not met'}) |",
        f"| largest parts of the venv (MB, `du`) | {biggest} |",
        f"| build from a warm base, nothing cached | {', '.join(f'{b:.1f}' for b in builds)} s (median "
        f"{med(builds):.1f} s) |",
        f"| store: `podman run` → `/health` 200 | median {med(stores):.2f} s, max {max(stores):.2f} s "
        f"({len(stores)} starts) |",
        f"| node (2 cameras 640x360): `podman run` → `/health` 200 | median {med(nodes):.2f} s, max "
        f"{max(nodes):.2f} s ({len(nodes)} starts) |",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "What dominates: onnxruntime (object detection, a hard dependency), PyAV with the FFmpeg it bundles "
        "(`av.libs`: libx265, libavcodec, SVT-AV1 ...) and numpy with its OpenBLAS: "
        f"{heavy / mb:.0f} MB, with the base {(heavy + base) / size:.0%} of the image. "
        "250 MB would need detection out of the node's image (a second image for "
        "`sht store`/`sht detect`) and an FFmpeg without the encoders we never use; docs/deploy.md says so.",
    ])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--builds", type=int, default=2)
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--output", default="docs/benchmarks.md", help="page whose section is replaced, or - (print only)")
    args = p.parse_args(argv)
    if missing_tools():
        print(f"bench container: needs {' '.join(missing_tools())}: apt-get install podman buildah mmdebstrap runc",
              file=sys.stderr)
        return 2
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sht-bench-container-") as tmp:
        work = Path(tmp)
        podman = Podman(work / "podman")
        try:
            podman.import_base(base_rootfs())
            context = build_context(work / "context", wheelhouse())
            builds = []
            for _ in range(args.builds):
                builds.append(podman.build(context, TAG))
                subprocess.run([*podman.base, "image", "prune", "--force"], env=podman.env, capture_output=True)
            size = podman.image_size(TAG)
            base = podman.image_size("docker.io/library/python:3.11-slim-bookworm")
            parts = venv_parts(podman)
            stores, nodes = start_times(podman, work, args.starts)
        finally:
            podman.close()
    info = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": source_commit(),
            "cpu": f"{os.cpu_count()} × {cpu_model()}", "podman": subprocess.run(
                ["podman", "--version"], capture_output=True, text=True).stdout.strip(),
            "load average (1/5/15 min) at start": " / ".join(f"{x:.2f}" for x in load),
            "at the end": " / ".join(f"{x:.2f}" for x in os.getloadavg())}
    body = section(info, size, base, builds, parts, stores, nodes)
    print(body)
    if args.output != "-":
        replace_section(Path(args.output), SECTION, body)
        print(f"wrote the '{SECTION}' section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
