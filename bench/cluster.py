"""The cluster benchmark (issue 16): how many cameras one store process takes in, against what the disk allows.

``python3 -m bench cluster [--reps N] [--seconds S] [--nodes N] [--quick] [--output PATH]`` (``just bench cluster``):

1. Encodes one real 10 s segment (1280x720, ~2 Mbit/s, ~2.6 MB) with the node's code.
2. Per repetition, back to back so each sees the same machine:
   - the disk's limit (bench/cluster_load.py ``disk_probe``): segment-sized files written, fsynced, renamed and
     their directory fsynced for a few seconds, by 1 thread, then by 2 (the store's write pool has 2);
   - each setup: fresh ``sht store`` process(es) (authentication on, detection and retention off), fed by a load
     generator process per store over real ``/ingest`` WebSocket connections, one per node, each with its own
     node token; after a warm-up, the acknowledgements in a window are counted and every process's CPU sampled.
   Setups: sqlite+file (the default), sqlite+S3 and postgresql+S3 (SeaweedFS and a throwaway PostgreSQL with fsync
   on, started as their tests start them; a row says why when they are missing), two sqlite+file stores side
   by side, each its own root and generator, and two postgresql+S3 stores side by side on one index and one
   bucket prefix (a cluster's layout, docs/cluster.md), each its own root and generator.
3. Prints a table (medians over the repetitions, with their range) and replaces the "## Cluster" section of
   docs/benchmarks.md (``--quick`` writes nothing unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from rich.console import Console

from bench import cluster_servers as servers
from bench.cluster_load import (
    LoadPlan,
    LoadResult,
    Media,
    disk_probe,
    first_start_us,
    make_media,
    remove_tree,
    spawn_generators,
)
from bench.cluster_report import ClusterRow, build_rows, findings, markdown_section, print_table
from bench.cluster_summary import DiskRep, StoreRep, acks_in_window
from bench.report import cpu_model, replace_section

if TYPE_CHECKING:
    from sht.local_servers import PostgresCluster, Seaweed

SECTION = "## Cluster"
PG_SETUPS = ("postgresql+S3", "2 × postgresql+S3")  # what needs PostgreSQL (and S3)
READY_TIMEOUT_S = 60.0
ACK_JOIN_S = 90.0  # a generator finishes the segments in flight (acks take at most 60 s) before it exits


@dataclass
class Options:
    reps: int
    seconds: float
    warmup: float
    disk_seconds: float
    nodes: int
    cameras_per_node: int
    tmp: Path


@dataclass
class Results:
    disk1: list[DiskRep] = field(default_factory=list)
    disk2: list[DiskRep] = field(default_factory=list)
    setups: dict[str, list[StoreRep]] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)
    failed: bool = False  # a setup that should have run did not: the command exits 1


# --- one repetition of one setup -------------------------------------------------------------------------

def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, stolen CPU seconds) so far."""
    t = psutil.cpu_times()
    return (t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0),
            getattr(t, "steal", 0.0))


def measure(stores: list[servers.StoreProcess], backend_pids: list[int], media: Media, opts: Options,
            work: Path) -> StoreRep:
    """Drive the stores with one generator each; count what they acknowledged in a window after the warm-up."""
    start_us = first_start_us()
    plans = [LoadPlan(store.ws_url, store.tokens, opts.cameras_per_node, media, start_us,
                      str(work / f"load-{i}.json")) for i, store in enumerate(stores)]
    for plan in plans:
        Path(plan.result_path).unlink(missing_ok=True)  # a previous repetition's, never read as this one's
    generators = spawn_generators(plans)
    try:
        for proc, ready, _ in generators:
            if not ready.wait(READY_TIMEOUT_S):
                raise RuntimeError(f"a load generator did not connect within {READY_TIMEOUT_S:.0f} s "
                                   f"(exit code {proc.exitcode})")
        time.sleep(opts.warmup)
        store_pids = [s.process.pid for s in stores]
        gen_pids = [proc.pid for proc, _, _ in generators]

        def sample() -> tuple[float, float, float, float, float, float, float]:
            busy, steal = machine_busy()
            return (time.monotonic(), servers.tree_cpu_s(store_pids), servers.tree_cpu_s(backend_pids),
                    servers.tree_cpu_s(gen_pids), busy, steal, servers.main_thread_cpu_s(store_pids))

        t0, store0, back0, gen0, busy0, steal0, loop0 = sample()
        time.sleep(opts.seconds)
        t1, store1, back1, gen1, busy1, steal1, loop1 = sample()
    finally:
        for _, _, stop in generators:
            stop.set()
        for proc, _, _ in generators:
            proc.join(ACK_JOIN_S)
            if proc.is_alive():
                proc.kill()
    missing = [proc.exitcode for (proc, _, _), plan in zip(generators, plans, strict=True)
               if not Path(plan.result_path).exists()]
    if missing:
        raise RuntimeError(f"a load generator exited with {missing[0]} without writing its result")
    results = [LoadResult.read(Path(plan.result_path)) for plan in plans]
    errors = [e for r in results for e in r.errors]
    if errors:
        raise RuntimeError(f"the load generator lost its link {len(errors)} times; first: {errors[0]}")
    acks = [t for r in results for t in r.acks]
    latencies = [ms for r in results for t, ms in zip(r.acks, r.latency_ms, strict=True) if t0 <= t < t1]
    ours = (store1 - store0) + (back1 - back0) + (gen1 - gen0)
    return StoreRep(segments=acks_in_window(acks, t0, t1), segment_bytes=media.size, seconds=t1 - t0,
                    store_cpu_s=(store1 - store0) + (back1 - back0), generator_cpu_s=gen1 - gen0,
                    others_cpu_s=max(0.0, (busy1 - busy0) - ours), steal_s=steal1 - steal0,
                    refused=sum(n for r in results for n in r.refused.values()), latencies_ms=latencies,
                    backend_cpu_s=back1 - back0, loop_cpu_s=(loop1 - loop0) / len(stores))


@contextlib.contextmanager
def stores(setup: Setup, opts: Options) -> Iterator[list[servers.StoreProcess]]:
    started: list[servers.StoreProcess] = []
    try:
        for i, root in enumerate(setup.roots):
            if i and setup.index is not None:  # stores of one index sign with one key: the first's
                servers.share_key(setup.roots[0], root)
            started.append(servers.start_store(root, opts.nodes, f"s{i}", index=setup.index,
                                               segments=setup.segments, env=setup.env))
        yield started
    finally:
        for store in started:
            store.stop()
        for root in setup.roots:
            remove_tree(root)


# --- the run --------------------------------------------------------------------------------------------

@dataclass
class Setup:
    """One way of running stores: their roots, and where their index and segments are."""

    name: str
    roots: list[Path]
    backend_pids: list[int] = field(default_factory=list)  # the S3 server and PostgreSQL, whose CPU counts too
    index: str | None = None
    segments: str | None = None
    env: dict[str, str] | None = None


def setups_for(rep: int, opts: Options, weed: Seaweed | None, database: PostgresCluster | None) -> list[Setup]:
    """This repetition's setups; each S3 one on a bucket prefix (and each PostgreSQL one on a database) of its own."""
    tmp = opts.tmp
    weed_pids = [weed.process.pid] if weed is not None and weed.process is not None else []
    pg_pids = weed_pids + (servers.postgres_pids(database.directory) if database is not None else [])

    def cluster(name: str, roots: list[Path], prefix: str) -> Setup:  # postgresql+S3: stores on one index, one prefix
        assert weed is not None and database is not None
        return Setup(name, roots, pg_pids, index=database.create_database(), segments=weed.url(prefix=prefix),
                     env=weed.env())

    out = [Setup("sqlite+file", [tmp / "file"])]
    if weed is not None:
        out.append(Setup("sqlite+S3", [tmp / "s3"], weed_pids, segments=weed.url(prefix=f"s3-{rep}"), env=weed.env()))
    if weed is not None and database is not None:
        out.append(cluster("postgresql+S3", [tmp / "pg"], f"pg-{rep}"))
    out.append(Setup("2 × sqlite+file", [tmp / "side-a", tmp / "side-b"]))
    if weed is not None and database is not None:
        out.append(cluster("2 × postgresql+S3", [tmp / "pg-a", tmp / "pg-b"], f"pg2-{rep}"))
    return out


def start_backends(stack: contextlib.ExitStack, opts: Options, s3: bool, pg: bool,
                   results: Results) -> tuple[Seaweed | None, PostgresCluster | None]:
    """SeaweedFS and PostgreSQL, each when wanted and it starts; one that does not is a row saying why."""
    weed = database = None
    if s3:
        try:
            weed = stack.enter_context(servers.seaweed(opts.tmp / "seaweed"))
        except (RuntimeError, OSError) as exc:
            results.not_measured["sqlite+S3"] = f"SeaweedFS did not start: {exc}"
    if pg and weed is not None:
        try:
            database = stack.enter_context(servers.postgres())
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            for name in PG_SETUPS:
                results.not_measured[name] = f"PostgreSQL did not start: {exc}"
    elif pg:
        for name in PG_SETUPS:
            results.not_measured[name] = "needs S3 too, and SeaweedFS did not start"
    return weed, database


def run(opts: Options, media: Media, console: Console, s3: bool, pg: bool, results: Results) -> None:
    data = Path(media.path).read_bytes()
    with contextlib.ExitStack() as stack:
        weed, database = start_backends(stack, opts, s3, pg, results)
        for rep in range(opts.reps):
            console.print(f"[bold]repetition {rep + 1} of {opts.reps}[/bold]")
            for writers, into in ((1, results.disk1), (2, results.disk2)):
                into.append(disk_probe(opts.tmp / "disk-probe" / "segments", data, opts.disk_seconds, writers))
                console.print(f"  disk, {writers} writer{'s' * (writers > 1)}: {into[-1].files_per_s:.0f} files/s, "
                              f"{into[-1].mb_per_s:.0f} MB/s")
            for setup in setups_for(rep, opts, weed, database):
                if setup.name in results.not_measured:
                    continue  # it failed in an earlier repetition
                try:
                    with stores(setup, opts) as running:
                        measured = measure(running, setup.backend_pids, media, opts, opts.tmp)
                except RuntimeError as exc:
                    console.print(f"  [red]{setup.name} failed: {exc}[/red]")
                    results.not_measured[setup.name] = f"failed: {str(exc)[:300]}"
                    results.failed = True
                    continue
                results.setups.setdefault(setup.name, []).append(measured)
                console.print(f"  {setup.name}: {measured.segments_per_s:.1f} segments/s, store CPU "
                              f"{measured.store_cpu_s / measured.seconds:.2f} cores, generator "
                              f"{measured.generator_cpu_s / measured.seconds:.2f}, rest of the machine "
                              f"{measured.others_cpu_s / measured.seconds:.2f}")


def segment_costs(media: Media, runs: int = 20) -> dict[str, float]:
    """The store's per-segment checks timed on their own (ms, median of ``runs``): where a segment's CPU goes."""
    import statistics

    from shared.protocol.ingest import SegmentHeader, encode_segment, sha256_hex
    from store.ingest.writer import mp4_problem

    payload = Path(media.path).read_bytes()
    header = SegmentHeader("bench", "cam", 10**15, 10**15 + 10**7, media.frames, media.size, media.sha256, "h264",
                           media.width, media.height)
    checks: dict[str, Callable[[], object]] = {
        "SHA-256": lambda: sha256_hex(payload),
        "MP4 demux and frame count": lambda: mp4_problem(payload, header),
        "building the message (the generator's copy)": lambda: encode_segment(header, payload),
    }
    out = {}
    for name, check in checks.items():
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            check()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(times)
    return out


def unavailable(wanted: bool, why: Callable[[], str | None]) -> str | None:
    if not wanted:
        return "skipped (--no-backends)"
    try:
        return why()
    except ImportError as exc:
        return f"this checkout cannot run it ({exc})"


def machine_info(tmp: Path, load: tuple[float, float, float]) -> dict[str, str]:
    device = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        device = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(tmp)], capture_output=True,
                                text=True, timeout=5).stdout.strip() or device
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": str(os.cpu_count()),
            "cpu": cpu_model(), "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
            "disk (where the stores wrote)": device, "python": platform.python_version(),
            "load average (1/5/15 min) at start": " / ".join(f"{x:.2f}" for x in load)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.cluster", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--reps", type=int, help="repetitions of every setup (default 3; 1 with --quick)")
    p.add_argument("--seconds", type=float, help="measuring window per repetition (default 8; 3 with --quick)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each window (default 3)")
    p.add_argument("--disk-seconds", type=float, default=4.0, help="disk probe per writer count (default 4)")
    p.add_argument("--nodes", type=int, default=16, help="node connections per store (default 16)")
    p.add_argument("--cameras-per-node", type=int, default=20, help="cameras each node sends (default 20)")
    p.add_argument("--no-backends", action="store_true", help="only the file backend (no SeaweedFS, PostgreSQL)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, short windows; writes nothing "
                                                        "unless --output")
    p.add_argument("--output", help="page whose '## Cluster' section is replaced (default docs/benchmarks.md; "
                                    "none with --quick)")
    p.add_argument("--tmp", help="directory for the stores and probes (default: the system's temporary directory)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    load = os.getloadavg()
    output = Path(args.output) if args.output else (None if args.quick else Path("docs/benchmarks.md"))
    results = Results()
    s3_missing = unavailable(not args.no_backends, servers.seaweed_missing)
    pg_missing = unavailable(not args.no_backends, servers.postgres_missing)
    if s3_missing:
        results.not_measured["sqlite+S3"] = s3_missing
    for name in PG_SETUPS if pg_missing or s3_missing else ():
        results.not_measured[name] = pg_missing or f"needs S3 too: {s3_missing}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sht-bench-cluster-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        opts = Options(reps=args.reps or (1 if args.quick else 3), seconds=args.seconds or (3.0 if args.quick else 8.0),
                       warmup=args.warmup if not args.quick else min(args.warmup, 2.0),
                       disk_seconds=args.disk_seconds if not args.quick else min(args.disk_seconds, 2.0),
                       nodes=args.nodes, cameras_per_node=args.cameras_per_node, tmp=tmp)
        info = machine_info(tmp, load)
        console.print("encoding the segment…")
        media = make_media(tmp / "media")
        console.print(f"  {media.size / 1e6:.2f} MB, {media.frames} frames")
        costs = segment_costs(media)
        run(opts, media, console, s3_missing is None, pg_missing is None and s3_missing is None, results)
    rows: list[ClusterRow] = build_rows(results.disk1, results.disk2, results.setups, results.not_measured,
                                        media.size, opts.nodes, opts.cameras_per_node)
    print_table(rows, "SHT CCTV cluster benchmark" + (" (--quick: smoke run)" if args.quick else ""))
    console.print(f"total {time.monotonic() - started:.0f} s")
    if output is not None:
        found = findings(results.disk1, results.disk2, results.setups, costs, opts.nodes)
        body = markdown_section(rows, info, reps=opts.reps, seconds=opts.seconds, warmup=opts.warmup,
                                disk_seconds=opts.disk_seconds, nodes=opts.nodes,
                                cameras_per_node=opts.cameras_per_node, segment_bytes=media.size, found=found,
                                quick=args.quick)
        replace_section(output, SECTION, body)
        console.print(f"wrote the '{SECTION}' section of {output}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
