"""bench/notify.py's figures: latencies from the arrivals, the printed table and the "## Notifications" section."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from bench.notify_receivers import Arrivals, EventKey
from bench.objects_summary import percentile
from bench.report import cpu_model, verdict

TARGET_P99_MS = 500.0  # issue 17
PATHS = (("mqtt", "MQTT `new` received"), ("webhook", "webhook received"))
SOURCE_FROM = {"node": "event start (node's stamp)", "ingest": "open event sent to /ingest"}


@dataclass
class Measured:
    source: str  # node | ingest
    events: int  # counted (the first N after the alert rules were set)
    took_s: float  # how long the source took to make them
    latency_ms: dict[str, list[float]]  # path -> arrival minus start, per event that arrived
    missing: dict[str, list[EventKey]]  # path -> the counted events that never arrived
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not any(self.missing.values())

    def ok(self, path: str) -> bool:
        values = self.latency_ms[path]
        return not self.missing[path] and bool(values) and percentile(values, 99) <= TARGET_P99_MS


def summarize(source: str, keys: Sequence[EventKey], took_s: float, mqtt: Arrivals, webhook: Arrivals) -> Measured:
    latency: dict[str, list[float]] = {}
    missing: dict[str, list[EventKey]] = {}
    for path, arrivals in (("mqtt", mqtt), ("webhook", webhook)):
        latency[path] = [(arrivals.new_at_us[k] - k[1]) / 1000 for k in keys if k in arrivals.new_at_us]
        missing[path] = [k for k in keys if k not in arrivals.new_at_us]
    return Measured(source, len(keys), took_s, latency, missing)


def cells(m: Measured, path: str) -> tuple[str, str, str, str, str]:
    """(arrived, p50, p99, max, min) of one path, ms."""
    values = m.latency_ms[path]
    arrived = f"{len(values)} / {m.events}"
    if not values:
        return arrived, "-", "-", "-", "-"
    return (arrived, f"{percentile(values, 50):.0f}", f"{percentile(values, 99):.0f}", f"{max(values):.0f}",
            f"{min(values):.0f}")


def print_table(results: Sequence[Measured], title: str) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    table = Table(title=title)
    for col in ("from", "to", "arrived", "p50 ms", "p99 ms", "max ms", "min ms", "target", "result"):
        table.add_column(col)
    for m in results:
        for path, name in PATHS:
            ok = m.ok(path)
            table.add_row(SOURCE_FROM[m.source], name, *cells(m, path), f"p99 ≤ {TARGET_P99_MS:.0f} ms, all arrive",
                          verdict(ok), style="green" if ok else "red")
    console.print(table)
    for m in results:
        for path, keys in m.missing.items():
            if keys:
                console.print(f"[red]{m.source}: {len(keys)} events never arrived on {path}: {keys[:5]}[/red]")


def _version(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine_lines(load: tuple[float, float, float]) -> dict[str, str]:
    from sht.local_mosquitto import mosquitto_binary

    try:
        aiomqtt = importlib.metadata.version("aiomqtt")
    except importlib.metadata.PackageNotFoundError:
        aiomqtt = "unknown"
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": str(os.cpu_count()),
            "cpu": cpu_model(), "python": platform.python_version(),
            "broker": _version([mosquitto_binary(), "-h"]), "aiomqtt": aiomqtt,
            "load average (1/5/15 min) at start": " / ".join(f"{x:.2f}" for x in load)}


def markdown_section(results: Sequence[Measured], info: dict[str, str], events: int, setup: dict[str, object],
                     quick: bool = False) -> str:
    notes = {k: v for m in results for k, v in m.notes.items()}
    took = ", ".join(f"{m.source} {m.took_s:.0f} s" for m in results)
    lines = [
        "`just bench notify` (bench/notify.py). Issue 17: event start → MQTT `new` received, and → webhook "
        f"received, p50 / p99 over {events} events; target p99 ≤ {TARGET_P99_MS:.0f} ms."
        + (" **--quick: a smoke run, not the benchmark.**" if quick else ""),
        "",
        "### What is measured",
        "",
        "- **Parts**, all real and on this machine: Debian's Mosquitto on a loopback port (started by the bench, "
        "as the tests start it: sht/local_mosquitto.py), `sht store --mqtt mqtt://127.0.0.1:PORT/sht --webhook "
        "http://127.0.0.1:PORT2/hook --detect off`, an aiomqtt subscriber on `sht/events` (QoS 1) and an aiohttp "
        "webhook receiver in the bench process that checks every request's `X-SHT-Signature` with the store's "
        "secret. Arrival is the wall clock when the subscriber or the receiver gets the `new`.",
        f"- **From a real node** (the first rows): a `sht node` with {setup['cameras']} simulated cameras "
        f"({setup['size']}, {setup['fps']} fps, the default `luma` motion detector), each a looping scenario in "
        f"which a walker crosses the picture for {setup['walk_s']:g} s every {setup['loop_s']:g} s, the cameras "
        "out of phase. Measured from the event's start as the node stamps it: the capture time of its first moving "
        "frame, on the same clock. So it includes the node confirming the motion (the event exists from its third "
        "consecutive moving frame: 2 frame intervals after its start, 133 ms at 15 fps), the open event's upload, "
        "the store's ingest, the change feed, the alert rules, the durable outbox (SQLite) and the broker or the "
        "HTTP POST.",
        f"- **Through /ingest** (the store's part alone): open motion events sent over the store's real /ingest "
        f"WebSocket as a node sends them, one every {setup['ingest_interval_s']:g} s over "
        f"{setup['ingest_cameras']} cameras, each closed before its camera's next; measured from the send.",
        "- **Alert rules**: every camera `notify = motion`, `notify_cooldown_s = 0` (set through the API), so "
        "every motion event is an alert and goes to the webhook (the default `objects` waits for the detector's "
        "label; the 60 s cooldown would hold back all but one a minute). Counted: the first events by start, as "
        "the store's index lists them, that start after the settings were made; each must arrive on both.",
        f"- Time to make the events: {took}.",
        "",
        "### Machine",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "",
        "### Results",
        "",
        "| from | to | arrived | p50 ms | p99 ms | max ms | min ms | target | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        for path, name in PATHS:
            lines.append(f"| {SOURCE_FROM[m.source]} | {name} | " + " | ".join(cells(m, path))
                         + f" | p99 ≤ {TARGET_P99_MS:.0f} ms, all arrive | {verdict(m.ok(path))} |")
    lines += ["", f"Signatures refused by the receiver: {notes.get('bad_signatures', 0)}; a second `new` for an "
              f"event (at least once delivery): MQTT {notes.get('repeated_new_mqtt', 0)}, webhook "
              f"{notes.get('repeated_new_webhook', 0)}."]
    return "\n".join(lines)
