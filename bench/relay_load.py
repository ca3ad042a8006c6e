"""Load: six cameras x five viewers (30 live clients), straight to the nodes versus through the store's relay.

``python3 -m bench.relay_load [--size 640x360] [--fps 15] [--seconds 10] [--rounds 5] [--write]`` starts a store,
three nodes with two cameras each (auth on, as deployed) and a `sht relay`, then, after one round with no viewers,
measures round after round direct / store relay / `sht relay`: capture-to-receive latency at the viewers, the
CPU of the nodes and of the relaying process (from their ``/metrics``: ``process_cpu_seconds_total``) and the
frames the nodes dropped. The relay's cost is judged by the median over rounds of its difference to direct in
the same round; ``--write`` replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

from bench.report import replace_section
from sht.latency import percentile
from store.live.relay_app import FLEET_POLL_S
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


MODES = ("direct to nodes", "through the store's relay", "through a `sht relay` process")
SECTION = "## Live load: 30 viewers, direct vs relay (`python3 -m bench.relay_load`)"


async def run(size: str, fps: int, seconds: float, per_camera: int, rounds: int) -> list[dict]:
    """One idle measurement, then ``rounds`` rounds of direct / store relay / `sht relay`, interleaved so
    that whatever else the machine does falls on all three alike."""
    with tempfile.TemporaryDirectory(prefix="sht-load-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        processes = Processes(logs)
        try:
            store_port, node_ports, toks = start_fleet(processes, Path(tmp), nodes=3, cameras=2, fps=fps, size=size)
            relay_port = free_port()
            relay = processes.start("relay", "relay", "--store", f"http://127.0.0.1:{store_port}", "--host",
                                    "127.0.0.1", "--port", str(relay_port), token=toks["viewer"])
            wait_for_health(f"http://127.0.0.1:{relay_port}", relay)
            await asyncio.sleep(FLEET_POLL_S + 1)  # the nodes have the store's key; the relay has read the fleet
            direct = [f"ws://127.0.0.1:{node_ports[c // 2]}/live/cam{c}" for c in range(6) for _ in range(per_camera)]
            relayed = [f"ws://127.0.0.1:{store_port}/live/cam{c}" for c in range(6) for _ in range(per_camera)]
            separate = [u.replace(f":{store_port}/", f":{relay_port}/") for u in relayed]
            rows = [await measure("no viewers", [], toks["viewer"], node_ports, store_port, seconds)]
            for k in range(rounds):
                for mode, urls, port in zip(MODES, (direct, relayed, separate), (store_port, store_port, relay_port),
                                            strict=True):
                    row = await measure(mode, urls, toks["viewer"], node_ports, port, seconds)
                    row["round"] = k
                    rows.append(row)
            return rows
        finally:
            processes.stop_all()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def table(rows: list[dict], size: str, fps: int, seconds: float) -> str:
    rounds = max((r.get("round", 0) for r in rows), default=0) + 1
    head = (f"| mode ({size} @ {fps} fps, 6 cameras) | viewers | frames received | latency p50 | latency p99 "
            "(each round) | node CPU (each, of one core) | relay's process CPU | frames dropped at nodes |\n"
            "|---|---|---|---|---|---|---|---|\n")

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f} ms"

    lines = []
    for mode in ("no viewers", *MODES):
        mine = [r for r in rows if r["mode"] == mode]
        p50 = [r["p50_ms"] for r in mine if r["p50_ms"] is not None]
        p99 = [r["p99_ms"] for r in mine if r["p99_ms"] is not None]
        lines.append(
            f"| {mode} | {mine[0]['viewers']} | {sum(r['frames'] for r in mine)} | "
            f"{ms(median(p50) if p50 else None)} | {ms(median(p99) if p99 else None)}"
            + (f" ({', '.join(f'{v:.1f}' for v in p99)})" if len(p99) > 1 else "") + " | "
            f"{median([r['node_cpu_pct'] for r in mine]):.1f} % | {median([r['store_cpu_pct'] for r in mine]):.1f} % | "
            f"{sum(r['node_drops'] for r in mine):.0f} |\n")
    verdicts = []
    for mode in MODES[1:]:
        added = [relay["p99_ms"] - direct["p99_ms"] for relay, direct in zip(
            [r for r in rows if r["mode"] == mode], [r for r in rows if r["mode"] == MODES[0]], strict=True)]
        added_p50 = [relay["p50_ms"] - direct["p50_ms"] for relay, direct in zip(
            [r for r in rows if r["mode"] == mode], [r for r in rows if r["mode"] == MODES[0]], strict=True)]
        ok = median(added) < 5.0
        verdicts.append(f"| {mode} | {median(added_p50):+.1f} ms | {median(added):+.1f} ms "
                        f"({', '.join(f'{v:+.1f}' for v in added)}) | < 5 ms | {'pass' if ok else 'FAIL'} |\n")
    return (head + "".join(lines)
            + f"\nAdded by the relay, against direct in the same round (medians of {rounds} rounds of "
              f"{seconds:.0f} s):\n\n| mode | added at p50 | added at p99 (each round) | target | result |\n"
              "|---|---|---|---|---|\n" + "".join(verdicts))


def cpu_finding(rows: list[dict]) -> str:
    """What the node CPU column says, from this run's numbers."""
    cpu = {mode: median([r["node_cpu_pct"] for r in rows if r["mode"] == mode]) for mode in ("no viewers", *MODES)}
    drops = sum(r["node_drops"] for r in rows)
    return (f"Node CPU (median, each node of two cameras): {cpu['no viewers']:.1f} % with no viewers, "
            f"{cpu[MODES[1]]:.1f} % and {cpu[MODES[2]]:.1f} % with the 30 viewers behind the store's relay or a "
            f"`sht relay` (the relay is one subscriber per camera and stream, however many watch), "
            f"{cpu[MODES[0]]:.1f} % with all 30 on the nodes directly. Frames dropped at the nodes: {drops:.0f}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-camera", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="replace its section of docs/benchmarks.md")
    args = parser.parse_args()
    rows = asyncio.run(run(args.size, args.fps, args.seconds, args.per_camera, args.rounds))
    out = table(rows, args.size, args.fps, args.seconds)
    print(out)
    if args.write:
        doc = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        body = (f"`python3 -m bench.relay_load --write` ({time.strftime('%Y-%m-%d %H:%M')} UTC): a store and three "
                "nodes with two simulated cameras each (auth on, as deployed), 30 viewers (five per camera) in one "
                "Python process on the same 2-core machine. Latency is capture (node wall clock) to receipt. Direct, "
                "store relay and `sht relay` are measured in turn, round after round, so the machine's noise falls "
                "on all three; the relay's cost is each round's difference to direct, and its median.\n\n" + out
                + "\n" + cpu_finding(rows) + "\n")
        replace_section(doc, SECTION, body)


if __name__ == "__main__":
    main()
