"""bench/recordings.py's report: medians of the runs, each run in brackets, the memory and the load average said."""

from __future__ import annotations

from bench.recordings import RANGES, head_end, report


def test_the_report_gives_medians_and_each_run() -> None:
    results = {f"{name} {kind}": [0.010, 0.030, 0.020] for name, _ in RANGES
               for kind in ("cold", "body", "older index", "repeat", "head")}
    results |= {f"{name} moov MB": [0.05, 0.05, 0.05] for name, _ in RANGES}
    results["24 h cold"] = [0.15, 0.09, 0.24]
    results["24 h older index"] = [1.5, 0.9, 2.4]
    results["24 h moov MB"] = [7.0, 7.0, 7.0]
    results["throughput MB/s"] = [100.0, 300.0, 200.0]
    results["10 min MP4 MB"] = [155.0, 155.0, 155.0]
    text = report(results, {"at start": 95 * 2**20, "peak": 471 * 2**20}, 2_600_000, 1280, 720, 3,
                  (2.13, 1.0, 1.0), (2.59, 1.0, 1.0))
    assert text.startswith("## Recordings\n")
    assert ("| 24 h | 150 ms (150, 90, 240) | 20 ms (10, 30, 20) | 1500 ms (1500, 900, 2400) | 20 ms (10, 30, 20) "
            "| 20 ms (10, 30, 20) | 7.00 MB |") in text
    assert "| 10 min | 20 ms (10, 30, 20) |" in text
    assert "streams at 200 MB/s (100, 300, 200)" in text
    assert "95 MiB at start, 471 MiB peak" in text and "load average 2.13 at the start and 2.59 at the end" in text
    assert "**Older index**" in text and "sizing.py" in text and "no longer grows" in text


def test_the_head_ends_with_the_mdat_box_header() -> None:
    ftyp = (24).to_bytes(4, "big") + b"ftyp" + bytes(16)
    moov = (16).to_bytes(4, "big") + b"moov" + bytes(8)
    mdat = (1).to_bytes(4, "big") + b"mdat" + (2**33).to_bytes(8, "big")  # a 64-bit size
    whole = ftyp + moov + mdat
    assert head_end(whole) == (len(whole), 16)
    assert head_end(whole[:-1]) is None and head_end(ftyp + moov) is None
