"""The object benchmark's event level, summed up: pure functions over what the poller and samplers saw.

bench/objects_events.py runs the system and fills a ``DeviceRun``; this module turns it into the table's rows
and is what tests/bench/test_objects_events.py checks with made-up runs (no store, no video).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.report import verdict

PERSON = "person"
VTEST_TARGET = 0.95  # share of vtest's motion events labelled person
P50_TARGET_S, P99_TARGET_S = 1.0, 2.0  # event start -> label queryable
SETTLE_S = 3.0  # an event counts once it has had this long to get its label (p99 target + 1 s)

Row = tuple[str, list[str], str, bool | None]  # metric, one value per device, target, ok (None: no verdict)


@dataclass
class Sighting:
    """One event as the poller saw it; times ``*_seen_us`` are the bench's wall clock (µs)."""

    id: int
    camera: str
    kind: str
    start_us: int  # the node's capture time of the event's first moving frame (wall clock, same machine)
    first_seen_us: int  # first returned by ``events``
    end_us: int = 0
    open: bool | None = None  # None: the store's events carry no ``open`` (older than issue 15)
    label: str | None = None
    label_seen_us: int | None = None  # first returned with a label
    labels: dict[str, int] | None = None


def observe(sightings: dict[int, Sighting], item: dict[str, Any], now_us: int) -> None:
    """Fold one item of an ``events`` page (its JSON) into ``sightings``. Fields issue 15 adds may be missing."""
    event_id = int(item["id"])
    seen = sightings.get(event_id)
    if seen is None:
        seen = sightings[event_id] = Sighting(event_id, str(item["camera"]), str(item.get("kind", "motion")),
                                              int(item["start_us"]), now_us)
    seen.end_us = int(item.get("end_us", seen.start_us))
    seen.open = bool(item["open"]) if "open" in item and item["open"] is not None else None
    label = item.get("label")
    if label is not None and seen.label_seen_us is None:
        seen.label_seen_us = now_us
    seen.label = label if label is not None else seen.label  # a label, once confirmed, is not taken back
    if isinstance(item.get("labels"), dict):
        seen.labels = {str(k): int(v) for k, v in item["labels"].items()}


def settled(s: Sighting, now_us: int) -> bool:
    """Nothing more is expected of it: closed, and labelled or closed for ``SETTLE_S``."""
    return s.open is False and (s.label is not None or now_us - s.first_seen_us > SETTLE_S * 1e6)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass
class ClipEvents:
    """The motion events of one clip's cameras that started inside the measured window."""

    events: int = 0
    labelled: int = 0  # vtest: labelled person; tree: labelled anything
    label_latency_s: list[float] = field(default_factory=list)  # start -> label first seen, labelled ones
    known_latency_s: list[float] = field(default_factory=list)  # start -> event first seen (open or closed)
    open_at_end: int = 0


def clip_events(sightings: dict[int, Sighting], clip_of: dict[str, str], clip: str, window: tuple[int, int],
                wanted: str | None) -> ClipEvents:
    """Events of ``clip``'s cameras with kind motion starting in ``[window[0], window[1] - SETTLE_S]``;
    ``wanted``: the label that counts (None: any label counts, as on the tree where every label is wrong)."""
    out = ClipEvents()
    last_start = window[1] - SETTLE_S * 1e6
    for s in sightings.values():
        if clip_of.get(s.camera) != clip or s.kind != "motion" or not window[0] <= s.start_us <= last_start:
            continue
        out.events += 1
        out.open_at_end += s.open is True
        out.known_latency_s.append((s.first_seen_us - s.start_us) / 1e6)
        if s.label is not None and (wanted is None or s.label == wanted):
            out.labelled += 1
            if s.label_seen_us is not None:
                out.label_latency_s.append((s.label_seen_us - s.start_us) / 1e6)
    return out


@dataclass
class DeviceRun:
    """One event-level run (store + node, ``minutes``) with the store's detector on one device."""

    device: str
    problem: str | None = None  # why the run did not happen or was cut short
    elapsed_s: float = 0.0  # the measured window
    sightings: dict[int, Sighting] = field(default_factory=dict)
    clip_of: dict[str, str] = field(default_factory=dict)  # camera -> clip
    window: tuple[int, int] = (0, 0)  # µs, wall clock
    labels_seen: bool = False  # any events item carried a "label" key (a store with issue 15's labels)
    frames: int | None = None  # analysed in the window (/health detect.frames)
    dropped: int | None = None
    errors: int | None = None  # frames the detector failed on, in the window
    restarts: int | None = None  # detector processes restarted, in the window
    detector_cpu_s: float | None = None  # the store's detector process(es); None: none found
    store_cpu_s: float = 0.0  # the store's own process (relay, decoding for the detector, index, API)
    queue: list[int] = field(default_factory=list)  # /health detect.queue, once a second
    queue_limit: int | None = None
    health: dict[str, Any] = field(default_factory=dict)  # the last /health "detect" object, as the store sent it

    def clip(self, clip: str) -> ClipEvents:
        return clip_events(self.sightings, self.clip_of, clip, self.window, PERSON if clip == "vtest" else None)


def backlog_grows(queue: list[int]) -> bool:
    """The queue's mean over the last third of the samples is more than 1 above the first third's."""
    if len(queue) < 6:
        return False
    third = len(queue) // 3
    return statistics.fmean(queue[-third:]) > statistics.fmean(queue[:third]) + 1


def _pct(n: int, d: int) -> str:
    return f"{n} / {d} ({n / d:.0%})" if d else "0 / 0"


def _latency(values: list[float]) -> str:
    return f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} s (n={len(values)})" if values else "-"


def _all(oks: list[bool | None]) -> bool | None:
    known = [o for o in oks if o is not None]
    return None if not known else all(known)


def _queue(r: DeviceRun) -> str:
    if not r.queue:
        return "-"
    third = max(1, len(r.queue) // 3)
    return (f"{max(r.queue)}, {statistics.fmean(r.queue[:third]):.1f} / {statistics.fmean(r.queue[-third:]):.1f} "
            f"({r.queue_limit if r.queue_limit is not None else '?'})")


def _failures(r: DeviceRun) -> str:
    if r.errors is None and r.restarts is None:
        return "-"
    last = r.health.get("last_error")
    text = f"{r.errors if r.errors is not None else '?'} / {r.restarts if r.restarts is not None else '?'}"
    return text + (f" (last: {str(last)[:80]})" if last and (r.errors or r.restarts) else "")


def _per_s(n: float | None, seconds: float | None, digits: int = 1) -> str:
    return "-" if n is None or not seconds else f"{n / seconds:.{digits}f}"


@dataclass
class _Cells:
    """What one device run puts in the table."""

    run: DeviceRun

    @property
    def ran(self) -> bool:
        return self.run.problem is None or bool(self.run.sightings)

    def verdicts(self) -> tuple[bool | None, ...]:
        """vtest share, tree zero, latency, backlog, failures: None when the run did not happen."""
        if not self.ran:
            return None, None, None, None, None
        r, v, t = self.run, self.run.clip("vtest"), self.run.clip("tree")
        vt = r.labels_seen and v.events > 0 and v.labelled / v.events >= VTEST_TARGET
        tr = r.labels_seen and t.events > 0 and t.labelled == 0
        lat = bool(v.label_latency_s) and (percentile(v.label_latency_s, 50) <= P50_TARGET_S
                                           and percentile(v.label_latency_s, 99) <= P99_TARGET_S)
        backlog = None if not r.queue and r.dropped is None else (
            not backlog_grows(r.queue) and (r.dropped or 0) <= 0.01 * max(1, r.frames or 0))
        failures = None if r.errors is None and r.restarts is None else not (r.errors or r.restarts)
        return vt, tr, lat, backlog, failures

    def values(self) -> list[str]:
        r, h = self.run, self.run.health
        head = f"{r.device} / {h.get('provider') or '?'}" if r.problem is None else f"{r.device}: {r.problem}"
        if not self.ran:
            return [head] + ["-"] * (len(METRICS) - 1)
        v, t = r.clip("vtest"), r.clip("tree")
        cpu_total = r.store_cpu_s + (r.detector_cpu_s or 0.0)
        frames = "-" if r.frames is None else f"{r.frames} ({_per_s(r.frames, r.elapsed_s)}/s)"
        dropped = "-" if r.dropped is None else _pct(r.dropped, r.dropped + (r.frames or 0))
        inference = (f"{h.get('inference_ms_p50', '-')} / {h.get('inference_ms_p99', '-')} ms" if h else "-")
        return [head, f"{r.elapsed_s / 60:.1f} min",
                _pct(v.labelled, v.events), _pct(t.labelled, t.events), _latency(v.label_latency_s),
                _latency(v.known_latency_s + t.known_latency_s), str(v.open_at_end + t.open_at_end), frames,
                _per_s(r.frames, r.detector_cpu_s, 0), _per_s(r.frames, cpu_total, 0),
                f"{_per_s(r.detector_cpu_s, r.elapsed_s, 2)} / {_per_s(r.store_cpu_s, r.elapsed_s, 2)}", inference,
                _queue(r), dropped, _failures(r)]


METRICS: list[tuple[str, str, int | None]] = [  # metric, target, which verdict (index into _Cells.verdicts)
    ("device / provider", "", None),
    ("measured for", "", None),
    ("vtest motion events labelled person", f">= {VTEST_TARGET:.0%}", 0),
    ("tree motion events labelled (any label)", "0", 1),
    ("event start -> label queryable, p50 / p99 (vtest)", f"p50 <= {P50_TARGET_S:g} s, p99 <= {P99_TARGET_S:g} s",
     2),
    ("event start -> event queryable (open), p50 / p99", "", None),
    ("events still open at the end (vtest + tree)", "", None),
    ("frames analysed (per second)", "", None),
    ("frames analysed per second per core (detector process)", "", None),
    ("frames analysed per second per core (store + detector)", "", None),
    ("CPU, cores busy: detector / store", "", None),
    ("inference p50 / p99 (store /health)", "", None),
    ("detector queue: max, mean first / last third (limit)", "", None),
    ("frames dropped (detector busy)", "no growing backlog", 3),
    ("detector errors / restarts", "0 / 0", 4),
]


def event_rows(runs: list[DeviceRun]) -> list[Row]:
    """The event-level table: one value column per device run."""
    cells = [_Cells(r) for r in runs]
    values = [c.values() for c in cells]
    verdicts = [c.verdicts() for c in cells]
    return [(metric, [v[i] for v in values], target, None if which is None else _all([x[which] for x in verdicts]))
            for i, (metric, target, which) in enumerate(METRICS)]


def rows_markdown(rows: list[Row], devices: list[str]) -> str:
    lines = ["| metric | " + " | ".join(devices) + " | target | result |", "|---|" + "---|" * (len(devices) + 2)]
    lines += [f"| {m} | " + " | ".join(values) + f" | {target} | {verdict(ok)} |" for m, values, target, ok in rows]
    return "\n".join(lines)


EVENTS_SECTION = "## Objects: events"


def events_markdown(rows: list[Row], devices: list[str], info: dict[str, str], setup: str) -> str:
    """The "## Objects: events" section of docs/benchmarks.md."""
    lines = [
        "Generated by `just bench objects` (`python3 -m bench objects`, bench/objects.py with "
        "bench/objects_events.py); rerun it to refresh this section and \"## Objects\". Needs Debian's `opencv-doc`.",
        "",
        "**Event level.** A real `sht store --detect local` (one run per device, a fresh store each) and a real "
        f"`sht node` with 6 cameras in motion: {setup} The node's motion detector (luma, defaults) opens and closes "
        "the events and tells the store when they open; the store's detector labels them. A poller asks the API "
        f"(`events`) every {0.1:g} s and notes when each event first comes back and when first with a label; "
        "latency is that time minus the event's `start_us` (the capture time of its first moving frame; node, "
        "store and bench share one clock). An event counts when it started in the measured window and at least "
        f"{SETTLE_S:g} s before its end; vtest events count as labelled when their label is `person`, tree events "
        "when they have any label. Frames analysed and dropped, the queue and inference times are the store's "
        "/health `detect` numbers (queue sampled once a second); CPU is psutil's user + system time of the store "
        "process and of its detector child process over the window.", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
        rows_markdown(rows, devices), "",
    ]
    return "\n".join(lines)


def print_rows(rows: list[Row], devices: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("metric", *devices, "target", "result"):
        table.add_column(column)
    for metric, values, target, ok in rows:
        table.add_row(metric, *values, target, verdict(ok))
    Console().print(table)
