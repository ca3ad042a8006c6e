"""Readings about the machine a service runs on; anything unreadable is ``None``, never a crash."""

from __future__ import annotations

from pathlib import Path

import psutil

from shared.protocol.health import ProcessReading

THERMAL_ROOT = Path("/sys/class/thermal")


def soc_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """Hottest thermal zone in °C (on a Pi this is the SoC), or None where none is readable."""
    best = None
    for zone in sorted(root.glob("thermal_zone*/temp")):
        try:
            value = int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        best = value if best is None else max(best, value)
    return best


class ProcessMonitor:
    """CPU and memory of this process and of the machine, for ``/health``."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: psutil reports usage since the previous call
        psutil.cpu_percent(None)

    def reading(self) -> ProcessReading:
        return ProcessReading(
            cpu_percent=psutil.cpu_percent(None),
            process_cpu_percent=self._process.cpu_percent(None),
            memory_percent=psutil.virtual_memory().percent,
            process_rss_bytes=self._process.memory_info().rss,
            temperature_c=soc_temperature_c(),
        )
