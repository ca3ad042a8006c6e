"""What the failover benchmark (bench/cluster_failover.py) measured, from its kills and the index's rows: the table
it prints and the section of docs/benchmarks.md it writes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from bench.report import Row, verdict
from bench.store import pct

WINDOW_S = 5.0  # a kill's window: segments ending this close to it are "around" it
OVERLAP_TOLERANCE_US = 1_000  # consecutive segments overlapping by more than this hold the same footage twice


@dataclass
class Kill:
    number: int
    victim: str  # the store's ws:// URL
    at_us: int  # wall clock right before the SIGKILL
    dead_us: int  # right after the process was reaped
    nodes: list[str]  # the nodes that were on it
    moved_s: dict[str, float] = field(default_factory=dict)  # node -> its link connected to the other store
    restart_s: float = 0.0  # kill -> the killed store answering /health again


@dataclass(frozen=True)
class Segment:
    camera: str
    node: str
    start_us: int
    end_us: int
    received_us: int  # when a store indexed it, right before its ack


@dataclass
class Run:
    kills: list[Kill]
    segments: list[Segment]
    health: dict[str, dict]  # node -> its /health right before it was stopped
    cameras: dict[str, list[str]]  # node -> its cameras
    segment_s: float


@dataclass
class Summary:
    rows: list[Row]
    moved_s: list[float]
    first_ack_s: list[float]
    gap_s: list[float]
    waited_s: list[float]
    duplicates: int
    lost: int

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.lost == 0


def by_camera(segments: Sequence[Segment]) -> dict[str, list[Segment]]:
    out: dict[str, list[Segment]] = defaultdict(list)
    for s in segments:
        out[s.camera].append(s)
    for rows in out.values():
        rows.sort(key=lambda s: s.start_us)
    return out


def first_ack_s(kill: Kill, node: str, segments: Sequence[Segment]) -> float | None:
    """Kill → the first segment of ``node`` indexed after the killed store was dead (so by the other store)."""
    after = [s.received_us for s in segments if s.node == node and s.received_us > kill.dead_us]
    return (min(after) - kill.at_us) / 1e6 if after else None


def around(kill: Kill, rows: Sequence[Segment]) -> list[Segment]:
    w = int(WINDOW_S * 1e6)
    return [s for s in rows if s.end_us >= kill.at_us - w and s.start_us <= kill.at_us + w]


def largest_hole_s(rows: Sequence[Segment]) -> float:
    """The largest hole between consecutive segments (0 when they touch or overlap)."""
    return max((max(0, b.start_us - a.end_us) / 1e6 for a, b in zip(rows, rows[1:], strict=False)), default=0.0)


def summarise(run: Run) -> Summary:
    cams = by_camera(run.segments)
    moved = [s for k in run.kills for s in k.moved_s.values()]
    acks, gaps, waited, missing_acks = [], [], [], 0
    for kill in run.kills:
        for node in kill.nodes:
            ack = first_ack_s(kill, node, run.segments)
            missing_acks += ack is None
            acks += [] if ack is None else [ack]
            for camera in run.cameras[node]:
                near = around(kill, cams.get(camera, []))
                gaps.append(largest_hole_s(near))
                waited += [max((s.received_us - s.end_us) / 1e6 for s in near)] if near else []
    every = [(s.received_us - s.end_us) / 1e3 for s in run.segments]
    duplicates = sum(1 for rows in cams.values() for a, b in zip(rows, rows[1:], strict=False)
                     if b.start_us < a.end_us - OVERLAP_TOLERANCE_US)
    holes = sum(1 for rows in cams.values() for a, b in zip(rows, rows[1:], strict=False)
                if b.start_us - a.end_us > run.segment_s * 1e6 / 2)
    recorded = {cam: h["recording"]["segments_spooled"] for health in run.health.values()
                for cam, h in health["cameras"].items()}
    short = {cam: n - len(cams.get(cam, [])) for cam, n in recorded.items() if len(cams.get(cam, [])) < n}
    node_lost = sum(h["spool"]["lost_segments"] for h in run.health.values())
    refused = sum(h["store"]["refused"] for h in run.health.values())
    resent = sum(h["store"]["resent"] for h in run.health.values())
    failovers = sum(h["store"]["failovers"] for h in run.health.values())
    lost = holes + node_lost + refused + sum(short.values()) + missing_acks

    def p50_max(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
        if not values:
            return "none"
        return f"{pct(values, 50):.{digits}f} / {max(values):.{digits}f} {unit} (n={len(values)})"

    rows = [
        Row("node on the other store: kill → its /health says the upload link is connected there, p50 / max",
            p50_max(moved)),
        Row("first ack from the other store: kill → the node's first segment indexed after it (received_us), "
            "p50 / max", p50_max(acks)),
        Row(f"coverage gap: largest hole between consecutive segments of a camera within ±{WINDOW_S:g} s of a kill, "
            "p50 / max", p50_max(gaps, digits=3)),
        Row(f"longest wait to be indexed (received − end) of a segment ending within ±{WINDOW_S:g} s of a kill, "
            "p50 / max", p50_max(waited)),
        Row("  received − end of every segment of the run, p50 / p99 (kills every few seconds: most are near one)",
            f"{pct(every, 50):.0f} / {pct(every, 99):.0f} ms (n={len(every)})" if every else "none"),
        Row("killed store started again: kill → it answers /health, p50 / max",
            p50_max([k.restart_s for k in run.kills], digits=1)),
        Row("duplicates: consecutive segments of a camera overlapping (the same footage twice)", str(duplicates),
            "0", duplicates == 0),
        Row("lost: holes over half a segment, segments the nodes recorded but the index lacks, lost or refused by "
            "a store, kills with no ack after", f"{lost} (holes {holes}, missing rows {sum(short.values())}, "
                                                f"node-side lost {node_lost}, refused {refused})", "0", lost == 0),
        Row("segments indexed; nodes' failovers; segments in flight to a killed store and sent again",
            f"{len(run.segments):,}; {failovers}; {resent}"),
    ]
    return Summary(rows, moved, acks, gaps, waited, duplicates, lost)


def print_table(summary: Summary, title: str) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    table = Table(title=title)
    for col in ("metric", "measured", "target", "result"):
        table.add_column(col)
    for r in summary.rows:
        table.add_row(r.metric, r.value, r.target, verdict(r.ok),
                      style="" if r.ok is None else ("green" if r.ok else "red"))
    console.print(table)


def markdown_section(summary: Summary, info: dict[str, str], run: Run, quick: bool, nodes: int, cameras: int,
                     fps: int, size: str) -> str:
    lines = [
        "Generated by `just bench cluster-failover` (`python3 -m bench cluster-failover"
        + (" --quick`; a smoke run, not the reference numbers)" if quick else "`)") + "; rerun it to refresh "
        "this section. The other sections of this page come from the other benchmarks.", "",
        "### What is measured", "",
        "- **Cluster**: two `sht store` processes (`--detect off --max-age off --min-free off`) on one PostgreSQL "
        "index (a throwaway server on this machine, fsync on) and one SeaweedFS bucket prefix, the second with a "
        f"copy of the first's key; {nodes} `sht node` processes with {cameras} simulated camera(s) each "
        f"({size}, {fps} fps, {run.segment_s:g} s segments), each with `--store A,B`.",
        f"- **Kills**: {len(run.kills)}, one after another. Before each, every node is connected with at most "
        "one segment in its spool, at least 4 s after the previous restart. The store the nodes are on (from their "
        "/health) gets SIGKILL; each node's /health is polled every 20 ms until its upload link is connected to "
        "the other store; then the killed store is started again on its port, so there are always two.",
        "- **First ack**: for each node on the killed store, the first of its segments a store indexed after the "
        "killed one was dead (its `received_us`, set right before the ack), so by the other store. With 1 s "
        "segments and an empty spool, that is when the next segment was ready, unless one was in flight.",
        f"- **Coverage gap**: per kill and camera of those nodes, the largest hole between consecutive segments "
        f"(start of one − end of the one before) among those within ±{WINDOW_S:g} s of the kill, read from the "
        "index after the nodes stopped (uploading what they held). A hole means footage that is not stored.",
        "- **Duplicates and lost**, over the whole run: consecutive segments of a camera overlapping; holes over "
        "half a segment; each camera's rows against the segments its node recorded (its /health before the "
        "stop); the nodes' own counts of lost and refused segments.",
        "",
        "### Machine", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
        "### Results", "",
        "| metric | measured | target | result |", "|---|---|---|---|",
        *[f"| {r.metric} | {r.value} | {r.target} | {verdict(r.ok)} |" for r in summary.rows], "",
    ]
    return "\n".join(lines)
