"""The cluster benchmark's arithmetic (bench/cluster.py): what its measurements add up to, no I/O.

One *repetition* of a setup is a measuring window over which the store's acknowledgements are counted and the
CPU of every process is sampled; a setup's figure is the median over its repetitions, with their range, so a
reader sees how noisy the (shared) machine was.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

SEGMENT_S = 10  # one camera makes one segment of this length every this many seconds
TARGET_SHARE_OF_LIMIT = 0.80  # issue 16: the file backend reaches >= 80 % of the disk's limit...
TARGET_CAMERAS = 300  # ...or >= 300 cameras' worth per store process


@dataclass(frozen=True)
class Spread:
    """The median of a few repetitions and their range."""

    median: float
    low: float
    high: float
    n: int

    @property
    def range_pct(self) -> float:
        """(high - low) as a percentage of the median: how far apart the repetitions were."""
        return 100.0 * (self.high - self.low) / self.median if self.median else 0.0

    def text(self, fmt: str = ".0f", unit: str = "") -> str:
        if self.n == 1:
            return f"{self.median:{fmt}}{unit} (1 run)"
        return (f"{self.median:{fmt}}{unit} (median of {self.n}; {self.low:{fmt}}–{self.high:{fmt}}, "
                f"±{self.range_pct / 2:.0f} %)")


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("a spread needs at least one value")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def acks_in_window(ack_times: Sequence[float], start: float, end: float) -> int:
    """Acknowledgements received in [start, end) (monotonic seconds, the same clock in every process)."""
    return sum(1 for t in ack_times if start <= t < end)


def cameras_worth(segments_per_s: float, segment_s: float = SEGMENT_S) -> float:
    """Cameras whose footage a rate of segments keeps up with: each camera makes one segment every segment_s."""
    return segments_per_s * segment_s


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (nan for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class StoreRep:
    """One repetition of a setup (one or more stores): what was acknowledged in the window and who used the CPU."""

    segments: int  # acknowledged in the window, all stores together
    segment_bytes: int  # the size of each segment sent
    seconds: float  # the window's length
    store_cpu_s: float  # the store processes (and, for S3/PostgreSQL, the servers behind them)
    generator_cpu_s: float  # the load generator(s)
    others_cpu_s: float  # the rest of the machine: other jobs on it, during the window
    steal_s: float = 0.0  # CPU time the hypervisor took away
    refused: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # send start -> ack, acks in the window
    backend_cpu_s: float = 0.0  # the part of store_cpu_s that the S3 server and PostgreSQL used
    loop_cpu_s: float = 0.0  # a store process's main thread (its event loop); the mean when there are several

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.segments_per_s * self.segment_bytes / 1e6

    @property
    def cpu_ms_per_segment(self) -> float:
        return 1000.0 * self.store_cpu_s / self.segments if self.segments else math.nan


@dataclass(frozen=True)
class DiskRep:
    """One run of the disk probe: files of the segment's size written, fsynced, renamed, directory fsynced."""

    files: int
    file_bytes: int
    seconds: float
    writers: int

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.files_per_s * self.file_bytes / 1e6


@dataclass(frozen=True)
class SetupSummary:
    name: str
    segments_per_s: Spread
    mb_per_s: Spread
    cameras: Spread
    store_cores: Spread  # CPU seconds per second of the store processes
    backend_cores: Spread  # of the S3 server and PostgreSQL (part of store_cores)
    loop_cores: Spread  # of a store process's event loop thread (1.0: that thread never rests)
    generator_cores: Spread
    cpu_ms_per_segment: Spread
    latency_p50_ms: float
    latency_p99_ms: float
    refused: int


def summarise(name: str, reps: Sequence[StoreRep]) -> SetupSummary:
    latencies = [ms for r in reps for ms in r.latencies_ms]
    return SetupSummary(
        name=name,
        segments_per_s=spread([r.segments_per_s for r in reps]),
        mb_per_s=spread([r.mb_per_s for r in reps]),
        cameras=spread([cameras_worth(r.segments_per_s) for r in reps]),
        store_cores=spread([r.store_cpu_s / r.seconds for r in reps]),
        backend_cores=spread([r.backend_cpu_s / r.seconds for r in reps]),
        loop_cores=spread([r.loop_cpu_s / r.seconds for r in reps]),
        generator_cores=spread([r.generator_cpu_s / r.seconds for r in reps]),
        cpu_ms_per_segment=spread([r.cpu_ms_per_segment for r in reps if r.segments] or [math.nan]),
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
        refused=sum(r.refused for r in reps),
    )


def share_of_limit(stores: Sequence[StoreRep], disks: Sequence[DiskRep]) -> Spread:
    """The store's byte rate over the disk probe's, repetition by repetition (each pair ran back to back, so
    they saw the same machine), as a spread of fractions."""
    if len(stores) != len(disks) or not stores:
        raise ValueError(f"pair each store repetition with a disk probe: {len(stores)} and {len(disks)}")
    return spread([s.mb_per_s / d.mb_per_s if d.mb_per_s else 0.0 for s, d in zip(stores, disks, strict=True)])


def meets_target(share: float, cameras: float) -> bool:
    """Issue 16's target for one store process on the file backend: disk-bound, or enough for 300 cameras."""
    return share >= TARGET_SHARE_OF_LIMIT or cameras >= TARGET_CAMERAS


@dataclass(frozen=True)
class Noise:
    """How busy the machine was with other work while the windows ran, and how far repetitions spread."""

    others_cores: Spread
    steal_cores: Spread
    widest_range_pct: float  # the largest range among the setups' segments/s and the disk probes


def noise(reps: Sequence[StoreRep], spreads: Sequence[Spread]) -> Noise:
    return Noise(others_cores=spread([r.others_cpu_s / r.seconds for r in reps]),
                 steal_cores=spread([r.steal_s / r.seconds for r in reps]),
                 widest_range_pct=max((s.range_pct for s in spreads), default=0.0))
