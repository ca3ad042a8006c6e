"""The pass-through benchmark's report (bench/passthrough.py), from made-up runs."""

from argparse import Namespace

from bench.passthrough import report


def test_per_camera_marginal_and_verdicts() -> None:
    rows = [{"motion": "off", "cameras": n, "cpu_percent": cpu, "thread_percent": 0.5, "fps": 25.0,
             "bitrate_bps": 4e6, "mode": "passthrough", "windows": [cpu, cpu + 0.1, cpu - 0.1]}
            for n, cpu in ((1, 1.8), (2, 2.4), (4, 3.6))]
    rows.append({"motion": "luma", "cameras": 1, "cpu_percent": 10.0, "thread_percent": 8.0, "fps": 25.0,
                 "bitrate_bps": 4e6, "mode": "passthrough"})
    text = report(rows, 0.6, Namespace(size="1920x1080", fps=25, bitrate="4M", seconds=20.0))
    assert "| 1 | off | passthrough | 1.80 (1.80, 1.90, 1.70) | 1.80 |" in text and text.count("| FAIL |") == 2
    assert "| 4 | off | passthrough | 3.60 (3.60, 3.70, 3.50) | 0.90 |" in text and "| pass |" in text
    assert "From 1 to 4 cameras the node's CPU grew by 0.60 % of a core per camera" in text
    assert "costs 0.60 % of a core" in text
