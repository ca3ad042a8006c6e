"""bench/recordings.py's report: medians of the runs, each run in brackets, the memory and the load average said."""

from __future__ import annotations

from bench.recordings import RANGES, report


def test_the_report_gives_medians_and_each_run() -> None:
    results = {f"{name} {kind}": [0.010, 0.030, 0.020] for name, _ in RANGES
               for kind in ("cold", "tables cached", "repeat")}
    results["24 h cold"] = [1.5, 0.9, 2.4]
    results["throughput MB/s"] = [100.0, 300.0, 200.0]
    results["10 min MP4 MB"] = [155.0, 155.0, 155.0]
    text = report(results, {"at start": 95 * 2**20, "peak": 471 * 2**20}, 2_600_000, 1280, 720, 3,
                  (2.13, 1.0, 1.0), (2.59, 1.0, 1.0))
    assert text.startswith("## Recordings\n")
    assert "| 24 h | 1500 ms (1500, 900, 2400) | 20 ms (10, 30, 20) | 20 ms (10, 30, 20) |" in text
    assert "| 10 min | 20 ms (10, 30, 20) |" in text
    assert "streams at 200 MB/s (100, 300, 200)" in text
    assert "95 MiB at start, 471 MiB peak" in text and "load average 2.13 at the start and 2.59 at the end" in text
    assert "Time to first byte grows with the range" in text
