"""A live fleet table in plain rich: one row per camera with its node's health."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from shared.httpjson import fetch_json
from shared.urls import http_url


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def fleet_table(nodes: list[dict | None], store: dict | None, latency: dict | None = None) -> Table:
    latency = latency or {}
    stored = (store or {}).get("cameras", {})
    title = "SHT CCTV fleet — store " + ("up" if store else "[red]unreachable[/red]")
    table = Table(title=title, expand=False)
    for col in ("node", "cpu %", "temp °C", "camera", "state", "fps", "Mbit/s", "dropped",
                "viewers", "spool", "stored segs", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right" if col not in ("node", "camera", "state") else "left")
    for i, node in enumerate(nodes):
        if node is None:
            table.add_row(f"node{i}", "-", "-", "-", "[red]down[/red]", *["-"] * 8)
            continue
        spool = node.get("spool") or {}
        first = True
        for cam, h in node.get("cameras", {}).items():
            lat = latency.get(cam, {})
            state = h.get("state", "?")
            colour = "green" if state == "up" else "red"
            table.add_row(
                node["node"] if first else "",
                _fmt(node.get("process_cpu_percent"), ".0f") if first else "",
                _fmt(node.get("temperature_c"), ".0f") if first else "",
                cam, f"[{colour}]{state}[/{colour}]", _fmt(h.get("fps"), ".1f"),
                _fmt(h.get("bitrate_bps", 0) / 1e6, ".2f"), str(h.get("frames_dropped", 0)),
                str(h.get("subscribers", 0)),
                str(spool.get("segments", "-")) if first else "",
                str(stored.get(cam, {}).get("segments", 0)),
                _fmt(lat.get("p50_ms"), ".1f"), _fmt(lat.get("p99_ms"), ".1f"),
            )
            first = False
    return table


def _get(url: str) -> dict | None:
    try:
        return fetch_json(http_url(url) + "/health", 2.0)
    except (OSError, ValueError):
        return None


def run_fleet_view(store_url: str, node_urls: list[str]) -> int:
    console = Console()
    try:
        with Live(console=console, refresh_per_second=1) as live:
            while True:
                live.update(fleet_table([_get(u) for u in node_urls], _get(store_url)))
                time.sleep(1.0)
    except KeyboardInterrupt:
        return 0
