"""The cluster benchmark's table and its section of docs/benchmarks.md (bench/cluster.py), from its measurements."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench.cluster_summary import (
    SEGMENT_S,
    TARGET_CAMERAS,
    TARGET_SHARE_OF_LIMIT,
    DiskRep,
    SetupSummary,
    StoreRep,
    cameras_worth,
    meets_target,
    noise,
    share_of_limit,
    spread,
    summarise,
)
from bench.report import verdict

SETUPS = ("sqlite+file", "sqlite+S3", "postgresql+S3", "2 × sqlite+file", "2 × postgresql+S3")
BACKEND_CPU = {"sqlite+S3": " + SeaweedFS", "postgresql+S3": " + SeaweedFS + PostgreSQL",
               "2 × postgresql+S3": " + SeaweedFS + PostgreSQL"}
SIDE_BY_SIDE = "2 × "  # a setup of two stores, compared with one store of the same kind


@dataclass
class ClusterRow:
    setup: str
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None


def disk_rows(label: str, reps: Sequence[DiskRep], file_mb: float) -> list[ClusterRow]:
    if not reps:
        return []
    files, mb = spread([r.files_per_s for r in reps]), spread([r.mb_per_s for r in reps])
    return [ClusterRow("disk limit", f"{label}: {file_mb:.1f} MB files, each written, fsynced, renamed, its "
                       "directory fsynced", f"{files.text()} files/s = {mb.median:.0f} MB/s = "
                       f"{cameras_worth(files.median):.0f} cameras' worth")]


def setup_rows(s: SetupSummary, reps: Sequence[StoreRep], disk1: Sequence[DiskRep], disk2: Sequence[DiskRep],
               one_store: SetupSummary | None, load: str) -> list[ClusterRow]:
    is_file = s.name == "sqlite+file"
    share = share_of_limit(reps, disk1) if is_file and len(disk1) == len(reps) else None
    target, ok = "", None
    if share is not None:
        target = f"≥ {TARGET_SHARE_OF_LIMIT:.0%} of the 1-writer limit or ≥ {TARGET_CAMERAS} cameras"
        ok = meets_target(share.median, s.cameras.median) and s.refused == 0
    refused = f"; {s.refused} refused" if s.refused else ""
    rows = [ClusterRow(s.name, f"ingest capacity ({load})",
                       f"{s.segments_per_s.text('.1f')} segments/s = {s.cameras.median:.0f} cameras' worth, "
                       f"{s.mb_per_s.median:.0f} MB/s{refused}", target, ok)]
    if share is not None:
        share2 = share_of_limit(reps, disk2) if len(disk2) == len(reps) else None
        rows.append(ClusterRow(s.name, "share of the disk's limit (each repetition over the probe just before it)",
                               f"{share.median:.0%} of 1 writer"
                               + (f" ({share.low:.0%}–{share.high:.0%})" if share.n > 1 else "")
                               + (f", {share2.median:.0%} of 2 writers" if share2 is not None else "")))
    if one_store is not None and one_store.segments_per_s.median:
        rows.append(ClusterRow(s.name, f"aggregate over one {one_store.name} store",
                               f"{s.segments_per_s.median / one_store.segments_per_s.median:.2f}×"))
    backend = f" (of which {s.backend_cores.median:.2f} the servers behind it)" if s.name in BACKEND_CPU else ""
    rows.append(ClusterRow(s.name, f"CPU: store process(es){BACKEND_CPU.get(s.name, '')}; a store's event loop "
                           "thread; load generator",
                           f"{s.store_cores.median:.2f} cores{backend}, {s.cpu_ms_per_segment.median:.1f} ms per "
                           "segment; "
                           f"event loop {s.loop_cores.median:.2f}; generator {s.generator_cores.median:.2f} "
                           f"(of {os.cpu_count()} cores)"))
    rows.append(ClusterRow(s.name, "ack latency, send start → ack, p50 / p99",
                           f"{s.latency_p50_ms:.0f} / {s.latency_p99_ms:.0f} ms"))
    return rows


def build_rows(disk1: Sequence[DiskRep], disk2: Sequence[DiskRep], setups: Mapping[str, Sequence[StoreRep]],
               not_measured: Mapping[str, str], segment_bytes: int, nodes: int,
               cameras_per_node: int) -> list[ClusterRow]:
    mb = segment_bytes / 1e6
    rows = disk_rows("1 writer", disk1, mb) + disk_rows("2 writers (the store's write pool has 2)", disk2, mb)
    summaries = {name: summarise(name, reps) for name, reps in setups.items() if reps}
    for name in SETUPS:
        if name in not_measured:
            rows.append(ClusterRow(name, "ingest capacity", f"not measured: {not_measured[name]}"))
        elif name in summaries:
            several = name.startswith(SIDE_BY_SIDE)
            load = f"{nodes} node connections × {cameras_per_node} cameras" + (" per store" if several else "")
            one = summaries.get(name.removeprefix(SIDE_BY_SIDE)) if several else None
            rows += setup_rows(summaries[name], setups[name], disk1, disk2, one, load)
    all_reps = [r for reps in setups.values() for r in reps]
    if all_reps:
        spreads = [s.segments_per_s for s in summaries.values()]
        spreads += [spread([r.files_per_s for r in d]) for d in (disk1, disk2) if d]
        n = noise(all_reps, spreads)
        rows.append(ClusterRow("machine", "rest of the machine during the windows (other jobs, kernel writeback)",
                               f"{n.others_cores.median:.2f} cores median ({n.others_cores.low:.2f}–"
                               f"{n.others_cores.high:.2f}); steal {n.steal_cores.median:.2f} cores; repetitions "
                               f"up to ±{n.widest_range_pct / 2:.0f} % apart"))
    return rows


def print_table(rows: Sequence[ClusterRow], title: str) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # a log or a pipe: no wrapping of the long metric names
    table = Table(title=title)
    for col in ("setup", "metric", "measured", "target", "result"):
        table.add_column(col)
    for r in rows:
        style = "" if r.ok is None else ("green" if r.ok else "red")
        table.add_row(r.setup, r.metric, r.value, r.target, verdict(r.ok), style=style)
    console.print(table)


def findings(disk1: Sequence[DiskRep], disk2: Sequence[DiskRep], setups: Mapping[str, Sequence[StoreRep]],
             costs_ms: Mapping[str, float], nodes: int, cpus: int | None = None) -> list[str]:
    """What the numbers say about where the limit is (every figure from this run; ``cpus``: this machine's)."""
    out: list[str] = []
    cpus = cpus or os.cpu_count() or 1
    reps = setups.get("sqlite+file")
    one = summarise("sqlite+file", reps) if reps else None
    if one is not None and reps and len(disk1) == len(reps):
        rest = spread([r.others_cpu_s / r.seconds for r in reps]).median
        busy = one.store_cores.median + one.generator_cores.median + rest
        share = share_of_limit(reps, disk1).median
        share2 = f" and {share_of_limit(reps, disk2).median:.0%} of two" if len(disk2) == len(reps) else ""
        if busy >= 0.85 * cpus:
            limit = f"so the CPU was the limit on this {cpus}-core machine"
        else:
            limit = (f"so neither the CPU nor the disk was used up: each of the {nodes} connections waits for its "
                     f"ack before sending the next segment (as a node does), and a segment spent "
                     f"{one.latency_p50_ms:.0f} ms p50 from send to ack, so the connections / latency bound the rate")
        out.append(f"One store process on the file backend took {one.segments_per_s.median:.0f} segments/s "
                   f"({one.cameras.median:.0f} cameras' worth), {share:.0%} of what the disk probe wrote with one "
                   f"writer{share2}. The machine was {busy:.1f} of {cpus} cores busy (the store "
                   f"{one.store_cores.median:.2f}, of which its event loop thread {one.loop_cores.median:.2f}; the "
                   f"generator {one.generator_cores.median:.2f}; the rest of the machine {rest:.2f}), {limit}. The "
                   f"store spent {one.cpu_ms_per_segment.median:.1f} ms of CPU per segment.")
    if costs_ms:
        parts = ", ".join(f"{k} {v:.1f} ms" for k, v in costs_ms.items())
        out.append(f"Single steps timed on their own in the benchmark's process, per segment: {parts}. The rest of "
                   "the store's CPU is receiving the bytes (WebSocket frames, assembling the message), the durable "
                   "write and the index row.")
    for name in ("sqlite+S3", "postgresql+S3"):
        if one is not None and setups.get(name):
            s = summarise(name, setups[name])
            ratio = s.segments_per_s.median / one.segments_per_s.median
            out.append(f"{name}: {s.segments_per_s.median:.0f} segments/s, {ratio:.0%} of sqlite+file, with the "
                       f"object store (and the database) on the same {cpus} cores: "
                       f"{s.backend_cores.median:.2f} cores of the {s.store_cores.median:.2f} were theirs.")
    if one is not None and setups.get("2 × sqlite+file"):
        two = summarise("2 × sqlite+file", setups["2 × sqlite+file"])
        gain = two.segments_per_s.median / one.segments_per_s.median
        why = ("they share its CPU and its disk, so the second process adds little here (this measures two "
               "processes sharing one box, not what a second box adds)") if gain < 1.3 else \
            "the second process adds capacity even here"
        out.append(f"Two stores side by side took {two.segments_per_s.median:.0f} segments/s together, {gain:.2f}× "
                   f"one store. On one {cpus}-core machine with one disk {why}.")
    if setups.get("postgresql+S3") and setups.get("2 × postgresql+S3"):
        single = summarise("postgresql+S3", setups["postgresql+S3"])
        pair = summarise("2 × postgresql+S3", setups["2 × postgresql+S3"])
        gain = pair.segments_per_s.median / single.segments_per_s.median
        out.append(f"Two postgresql+S3 stores side by side on one index and one bucket prefix took "
                   f"{pair.segments_per_s.median:.0f} segments/s together, {gain:.2f}× one such store; both stores, "
                   f"SeaweedFS and PostgreSQL share the same {cpus} cores ({pair.backend_cores.median:.2f} cores of "
                   f"the {pair.store_cores.median:.2f} were the servers'), so this is what a second process adds "
                   "on one box, not what a second box would add.")
    return out


def markdown_section(rows: Sequence[ClusterRow], info: Mapping[str, str], *, reps: int, seconds: float,
                     warmup: float, disk_seconds: float, nodes: int, cameras_per_node: int, segment_bytes: int,
                     found: Sequence[str], quick: bool) -> str:
    mb = segment_bytes / 1e6
    lines = [
        "Generated by `just bench cluster` (`python3 -m bench cluster"
        + (" --quick`; a smoke run, not the reference numbers)" if quick else "`)") + "; rerun it to refresh this "
        "section. The other sections of this page come from the other benchmarks.", "",
        "### What is measured", "",
        f"- **Load**: per store, one load generator process with {nodes} node connections on `/ingest`, each with "
        f"its own node token, sending as a node does (`IngestSender`, 1 MiB fragments, the next segment once the "
        f"last is acknowledged), {cameras_per_node} cameras per node taking turns. Every segment is the same real "
        f"MP4, {mb:.2f} MB, 1280x720 15 fps {SEGMENT_S} s (~2 Mbit/s) made by the node's code, which the store "
        "hashes, demuxes and counts the frames of as for any segment; only camera and start time change. "
        f"A camera's worth is one segment every {SEGMENT_S} s, so cameras = segments/s × {SEGMENT_S}.",
        "- **Stores**: a fresh `sht store` process per repetition (authentication on; `--detect off --max-age off "
        "--min-free off`: ingest alone), on a root of its own in the same file system as the disk probe. "
        "sqlite+S3 and postgresql+S3 keep segments in SeaweedFS on this machine (as `tests/store/seaweed.py` starts "
        "it; it is not set to fsync each object) and, for postgresql+S3, the index in a throwaway PostgreSQL "
        "with fsync and synchronous commit on (the tests turn fsync off); their CPU counts with the store's. "
        "\"2 × sqlite+file\" is two store processes side by side, each with its own root and generator; "
        "\"2 × postgresql+S3\" is two store processes side by side on one PostgreSQL index and one bucket prefix "
        "(a cluster's layout), each with its own root and generator, the second given the first's key files so "
        "both take every node token.",
        f"- **Window**: after {warmup:g} s of load, the acknowledgements received in {seconds:g} s are counted; "
        "CPU is sampled (psutil) for every process over the same window, and the whole machine's busy time "
        "minus ours is \"the rest of the machine\".",
        f"- **Disk limit**: right before each repetition, a Python loop writes {mb:.2f} MB files for "
        f"{disk_seconds:g} s into a directory tree beside the stores' (temporary name, write, fsync, rename, "
        "fsync of the directory, as the file backend does per segment), with 1 writer thread and then 2. The "
        "store's share is each repetition over the 1-writer probe just before it.",
        f"- **Repetitions**: {reps}; figures are medians, with the range over the repetitions.", "",
        "### Machine", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
        "### Results", "",
        "| setup | metric | measured | target | result |", "|---|---|---|---|---|",
        *[f"| {r.setup} | {r.metric} | {r.value} | {r.target} | {verdict(r.ok)} |" for r in rows], "",
        f"Target (issue 16): one store process on the file backend reaches ≥ {TARGET_SHARE_OF_LIMIT:.0%} of the "
        f"disk's limit (it is disk-bound, not Python-bound) or ≥ {TARGET_CAMERAS} cameras' worth.", "",
        *(["### Findings", "", *[f"- {f}" for f in found], ""] if found else []),
    ]
    return "\n".join(lines)

