"""bench/review.py: the click plan, the rows against the targets (a missed click fails p99), and a smoke run of the
whole benchmark (a real store, real Chromium) writing its section."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import review
from bench import store as bs


def test_click_plan_avoids_the_oldest_day_and_the_footage_end() -> None:
    plan = review.click_plan([f"cam{i}" for i in range(6)], 3, 200)
    assert {day for _, day, _ in plan} == {1, 2}
    assert all(f <= 1 - 600 / 86_400 for _, day, f in plan if day == 2)
    assert plan == review.click_plan([f"cam{i}" for i in range(6)], 3, 200)  # the same clicks every run


def test_rows_judge_the_targets_and_count_missed_clicks(tmp_path: Path) -> None:
    built = bs.Built(tmp_path, bs.Scale(6, 30, 20_000), 9.0, 1)
    fine = review.Clicks(first_ms=[50.0] * 29 + [700.0], moment_ms=[60.0] * 30, sidecar_ms=[20.0] * 30)
    rows = {r.metric.split(",")[-1].strip(): r for r in review.rows(fine, built)}
    assert rows["p50 (n=30)"].ok and rows["p99 (n=30)"].ok and rows["p99 (n=30)"].value == "700 ms"
    missed = review.Clicks(first_ms=[50.0] * 29, moment_ms=[60.0] * 29, missed=[("cam0", 0)])
    table = review.rows(missed, built)
    assert [r.ok for r in table if r.ok is not None] == [True, False, False]  # p50, p99 (inf), missed


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_quick_run_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    assert review.main(["--quick", "--clicks", "3", "--output", str(out), "--tmp", str(tmp_path)]) == 0
    text = out.read_text()
    assert "## Other\n\nkept" in text and "## Review" in text
    assert "| Chromium | click → first recorded frame painted, p50 (n=3) |" in text
    assert "clicks whose moment was not painted within 20 s (counted as infinitely slow) | 0 | 0 | pass |" in text
