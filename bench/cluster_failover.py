"""The failover benchmark (issue 16): what a node's footage goes through when the store it uploads to is killed.

``python3 -m bench cluster-failover [--kills N] [--nodes N] [--cameras-per-node N] [--quick] [--output PATH]``
(``just bench cluster-failover``):

1. Starts a throwaway PostgreSQL and SeaweedFS (bench/cluster_servers.py), two ``sht store`` processes on that one
   index and one bucket prefix (the second with a copy of the first's key, as docs/cluster.md says), and real
   ``sht node`` processes with simulated cameras and 1 s segments, each given ``--store A,B``.
2. ``--kills`` times: once every node is connected and its spool is empty, SIGKILLs the store the nodes are on
   (from their /health), polls each node's /health until its upload link is connected to the other store, and
   starts the killed store again on its port (so there are always two).
3. Stops the nodes (they upload what they hold) and reads the index: per kill and node, the first segment the
   other store indexed after the kill (its ``received_us``: the ack follows it); per kill and camera, the largest
   hole between consecutive segments within ``WINDOW_S`` of the kill, and the longest a segment ending then waited
   to be indexed; over the whole run, overlapping segments (duplicates) and holes (lost footage), with the nodes'
   own counts (segments recorded, lost, refused, resent).
4. Prints a table (p50 and max over the kills) and replaces the "## Cluster failover" section of
   docs/benchmarks.md (``--quick`` writes nothing unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench import cluster_servers as servers
from bench.cluster import machine_info
from bench.cluster_failover_report import Kill, Run, Segment, markdown_section, print_table, summarise
from bench.processes import spawn_sht, stop_in_order
from bench.report import replace_section, source_commit

SECTION = "## Cluster failover"
SEGMENT_S = 1
FPS = 10
SIZE = "320x240"
POLL_S = 0.02
MOVE_LIMIT_S = 20.0  # a node not on the other store this long after a kill: the run fails
STEADY_LIMIT_S = 60.0
SETTLE_S = 4.0  # at least this long between a restart and the next kill: each kill's window is its own
WARMUP_S = 5.0


@dataclass
class Node:
    node_id: str
    cameras: list[str]
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
            return json.loads(r.read())


def now_us() -> int:
    return time.time_ns() // 1000


def start_nodes(tokens: list[tuple[str, str]], cameras_per_node: int, stores: str, work: Path) -> list[Node]:
    nodes = []
    for node_id, token in tokens:
        port = servers.free_port()
        cameras = [f"{node_id}-c{c}" for c in range(cameras_per_node)]
        args = ["node", "--id", node_id, "--host", "127.0.0.1", "--port", str(port), "--store", stores,
                "--spool", str(work / "spool" / node_id), "--segment-seconds", str(SEGMENT_S), "--size", SIZE,
                "--fps", str(FPS), *(a for cam in cameras for a in ("--camera", f"{cam}=synthetic"))]
        proc = spawn_sht(work / f"{node_id}.log", *args, token=token, die_with_parent=True)
        nodes.append(Node(node_id, cameras, port, proc))
    return nodes


def wait_steady(nodes: list[Node], stores: list[servers.StoreProcess], not_before: float) -> dict[str, str]:
    """Wait until every store answers and every node is connected with nothing waiting in its spool (and
    ``not_before`` has passed); returns node -> the store URL it is on."""
    deadline = time.monotonic() + STEADY_LIMIT_S
    last: object = None
    while True:
        try:
            for store in stores:
                store.health()
            healths = {n.node_id: n.health() for n in nodes}
            on = {node: h["store"]["url"] for node, h in healths.items()}
            if time.monotonic() >= not_before and all(
                    h["store"]["link"] == "connected" and h["spool"]["segments"] <= 1 for h in healths.values()):
                return on
            last = {node: (h["store"]["link"], h["spool"]["segments"]) for node, h in healths.items()}
        except OSError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"the nodes did not settle within {STEADY_LIMIT_S:.0f} s: {last}")
        time.sleep(0.1)


def kill_once(number: int, stores: list[servers.StoreProcess], nodes: list[Node], on: dict[str, str],
              restart: Callable[[servers.StoreProcess], servers.StoreProcess], console: Console) -> Kill:
    """SIGKILL the store most nodes are on, follow its nodes to the other one, start it again."""
    urls = [s.ws_url for s in stores]
    victim_url = max(urls, key=lambda u: sum(1 for v in on.values() if v == u))
    victim = stores[urls.index(victim_url)]
    other_url = urls[1 - urls.index(victim_url)]
    moving = [n for n in nodes if on[n.node_id] == victim_url]
    at = now_us()
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    kill = Kill(number, victim_url, at, now_us(), [n.node_id for n in moving])
    waiting = {n.node_id: n for n in moving}
    while waiting:
        for node_id, node in list(waiting.items()):
            with contextlib.suppress(OSError):
                link = node.health()["store"]
                if link["url"] == other_url and link["link"] == "connected":
                    kill.moved_s[node_id] = (now_us() - at) / 1e6
                    del waiting[node_id]
        if waiting and (now_us() - at) / 1e6 > MOVE_LIMIT_S:
            raise RuntimeError(f"kill {number}: {sorted(waiting)} not on {other_url} {MOVE_LIMIT_S:.0f} s after "
                               f"{victim_url} was killed")
        time.sleep(POLL_S)
    stores[urls.index(victim_url)] = restart(victim)
    kill.restart_s = (now_us() - at) / 1e6
    console.print(f"  kill {number}: {victim_url} killed; its {len(moving)} node(s) on the other store after "
                  + ", ".join(f"{s:.2f}" for s in kill.moved_s.values()) + f" s; started again after "
                  f"{kill.restart_s:.1f} s")
    return kill


def read_segments(index_url: str) -> list[Segment]:
    import psycopg

    with psycopg.connect(index_url) as conn:
        return [Segment(*row) for row in conn.execute(
            "SELECT camera, node, start_us, end_us, received_us FROM segments ORDER BY camera, start_us")]


@contextlib.contextmanager
def backends(work: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(index URL, segments URL, the stores' environment) of a throwaway PostgreSQL and SeaweedFS."""
    with servers.seaweed(work / "seaweed") as weed, servers.postgres() as cluster:
        yield cluster.create_database(), weed.url(prefix="failover"), weed.env()


def run(kills: int, node_count: int, cameras_per_node: int, work: Path, console: Console, index_url: str,
        segments_url: str, env: dict[str, str], warmup_s: float = WARMUP_S, settle_s: float = SETTLE_S) -> Run:
    """The kills, on a new (empty) index and bucket prefix; the stores and nodes are gone when it returns."""
    roots = [work / "store-a", work / "store-b"]

    def start(root: Path, nodes: int, port: int | None = None) -> servers.StoreProcess:
        return servers.start_store(root, nodes, "f", index=index_url, segments=segments_url, env=env, port=port)

    stores = [start(roots[0], node_count)]
    nodes: list[Node] = []
    done: list[Kill] = []
    final: dict[str, dict] = {}
    try:
        servers.share_key(roots[0], roots[1])
        stores.append(start(roots[1], 0))
        nodes = start_nodes(stores[0].tokens, cameras_per_node, ",".join(s.ws_url for s in stores), work)
        not_before = time.monotonic() + warmup_s
        for number in range(1, kills + 1):
            on = wait_steady(nodes, stores, not_before)
            done.append(kill_once(number, stores, nodes, on, lambda s: start(s.root, 0, s.port), console))
            not_before = time.monotonic() + settle_s
        wait_steady(nodes, stores, not_before)
        final = {n.node_id: n.health() for n in nodes}
    finally:
        stop_in_order([n.process for n in nodes])  # before the stores: they upload what they hold
        for store in stores:
            store.stop()
    return Run(done, read_segments(index_url), final, {n.node_id: n.cameras for n in nodes}, SEGMENT_S)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.cluster_failover", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--kills", type=int, help="stores killed, one after another (default 10; 2 with --quick)")
    p.add_argument("--nodes", type=int, help="sht node processes (default 3; 2 with --quick)")
    p.add_argument("--cameras-per-node", type=int, help="simulated cameras per node (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run; writes nothing unless --output")
    p.add_argument("--output", help=f"page whose '{SECTION}' section is replaced (default docs/benchmarks.md; none "
                                    "with --quick)")
    p.add_argument("--tmp", help="directory for the stores and spools (default: the system's temporary directory)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    load = os.getloadavg()
    missing = servers.seaweed_missing() or servers.postgres_missing()
    if missing:
        console.print(f"[red]cannot run: {missing}[/red]")
        return 2
    kills = args.kills or (2 if args.quick else 10)
    node_count = args.nodes or (2 if args.quick else 3)
    cameras = args.cameras_per_node or (1 if args.quick else 2)
    output = Path(args.output) if args.output else (None if args.quick else Path("docs/benchmarks.md"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sht-bench-failover-", dir=args.tmp) as name:
        work = Path(name)
        info = {**machine_info(work, load), "commit": source_commit()}
        console.print(f"{node_count} nodes × {cameras} cameras, {SEGMENT_S} s segments; {kills} kills")
        with backends(work) as (index_url, segments_url, env):
            result = run(kills, node_count, cameras, work, console, index_url, segments_url, env)
    summary = summarise(result)
    print_table(summary, "SHT CCTV cluster failover" + (" (--quick: smoke run)" if args.quick else ""))
    console.print(f"total {time.monotonic() - started:.0f} s")
    if output is not None:
        replace_section(output, SECTION, markdown_section(summary, info, result, args.quick, node_count, cameras,
                                                          FPS, SIZE))
        console.print(f"wrote the '{SECTION}' section of {output}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
