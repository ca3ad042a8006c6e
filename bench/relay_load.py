"""Load: six cameras x five viewers (30 live clients), straight to the nodes versus through the store's relay.

``python3 -m bench.relay_load [--size 640x360] [--fps 15] [--seconds 15] [--write]`` starts a store and three
nodes with two cameras each (auth on, as deployed), then for each mode (no viewers, direct, relay) connects the
viewers, measures capture-to-receive latency at the viewers, the CPU of the nodes and of the store (from their
``/metrics``: ``process_cpu_seconds_total``) and the frames the nodes dropped, and prints a table (``--write``
adds it to docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

from sht.latency import percentile
from store.relay_app import FLEET_POLL_S
from tests.system.conftest import Processes, free_port, wait_for_health
from tests.system.live_clients import Viewer, start_fleet


def scrape(port: int) -> dict[str, float]:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def totals(ports: list[int], prefix: str) -> float:
    return sum(v for p in ports for k, v in scrape(p).items() if k.startswith(prefix))


async def measure(mode: str, urls: list[str], token: str, node_ports: list[int], store_port: int,
                  seconds: float) -> dict[str, float | str | None]:
    viewers = [Viewer(u, token).start() for u in urls]
    await asyncio.sleep(3.0)  # connected, past the first keyframe
    for v in viewers:
        v.latency_ms.clear()
    cpu0, store0 = totals(node_ports, "process_cpu_seconds_total"), scrape(store_port)["process_cpu_seconds_total"]
    drops0, t0 = totals(node_ports, "sht_camera_frames_dropped_total"), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    cpu1, store1 = totals(node_ports, "process_cpu_seconds_total"), scrape(store_port)["process_cpu_seconds_total"]
    drops = totals(node_ports, "sht_camera_frames_dropped_total") - drops0
    for v in viewers:
        await v.stop()
    samples = sorted(x for v in viewers for x in v.latency_ms)
    return {"mode": mode, "viewers": len(urls), "frames": len(samples),
            "p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99),
            "node_cpu_pct": 100 * (cpu1 - cpu0) / wall / len(node_ports),
            "store_cpu_pct": 100 * (store1 - store0) / wall, "node_drops": drops}


async def run(size: str, fps: int, seconds: float, per_camera: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="sht-load-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        processes = Processes(logs)
        try:
            store_port, node_ports, toks = start_fleet(processes, Path(tmp), nodes=3, cameras=2, fps=fps, size=size)
            await asyncio.sleep(2.0)  # the nodes have the store's key
            direct = [f"ws://127.0.0.1:{node_ports[c // 2]}/live/cam{c}" for c in range(6) for _ in range(per_camera)]
            relayed = [f"ws://127.0.0.1:{store_port}/live/cam{c}" for c in range(6) for _ in range(per_camera)]
            rows = [await measure("no viewers", [], toks["viewer"], node_ports, store_port, seconds)]
            rows.append(await measure("direct to nodes", direct, toks["viewer"], node_ports, store_port, seconds))
            rows.append(await measure("through the store's relay", relayed, toks["viewer"], node_ports, store_port,
                                      seconds))
            relay_port = free_port()
            relay = processes.start("relay", "relay", "--store", f"http://127.0.0.1:{store_port}", "--host",
                                    "127.0.0.1", "--port", str(relay_port), token=toks["viewer"])
            wait_for_health(f"http://127.0.0.1:{relay_port}", relay)
            await asyncio.sleep(FLEET_POLL_S + 1)  # it has read the fleet
            separate = [u.replace(f":{store_port}/", f":{relay_port}/") for u in relayed]
            row = await measure("through a `sht relay` process", separate, toks["viewer"], node_ports, relay_port,
                                seconds)
            rows.append(row)
            return rows
        finally:
            processes.stop_all()


def table(rows: list[dict], size: str, fps: int) -> str:
    head = (f"| mode ({size} @ {fps} fps, 6 cameras) | viewers | frames received | latency p50 | latency p99 | "
            "node CPU (each, of one core) | relay's process CPU | frames dropped at nodes |\n"
            "|---|---|---|---|---|---|---|---|\n")

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f} ms"

    return head + "".join(
        f"| {r['mode']} | {r['viewers']} | {r['frames']} | {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | "
        f"{r['node_cpu_pct']:.1f} % | {r['store_cpu_pct']:.1f} % | {r['node_drops']:.0f} |\n" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--per-camera", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    rows = asyncio.run(run(args.size, args.fps, args.seconds, args.per_camera))
    out = table(rows, args.size, args.fps)
    print(out)
    if args.write:
        doc = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        with doc.open("a") as f:
            f.write(f"\n## Live load: direct vs relay ({time.strftime('%Y-%m-%d')}, `python3 -m bench.relay_load`)\n\n"
                    + out)


if __name__ == "__main__":
    main()
