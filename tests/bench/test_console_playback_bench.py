"""bench/console_playback.py's table and section from given windows (the measuring itself needs a store, a node
and ~2 minutes: `just bench console-playback`)."""

from __future__ import annotations

import argparse

import pytest

from bench.console_playback import Window, markdown, parse_args, rows_for


def test_rows_are_medians_over_runs_and_judge_1x_against_25_percent() -> None:
    runs = [[Window(1, cpu, 9.5, 15.0, 9.5), Window(8, 30.0, 8.0, 8.0, 8.0)] for cpu in (12.0, 30.0, 14.0)]
    rows = rows_for(runs)
    cpu_1x = rows[0]
    assert cpu_1x.value == "14.0 (12.0, 30.0, 14.0)" and cpu_1x.ok is True
    assert rows[1].value == "9.5" and rows[1].ok is True
    assert rows[2].value == "15.0 / 9.5"
    assert rows[3].value.startswith("30.0") and rows[3].ok is None  # 8x: reported, no target
    too_busy = rows_for([[Window(1, 26.0, 12.0, 15.0, 12.0), Window(8, 30.0, 8.0, 8.0, 8.0)]])
    assert too_busy[0].ok is False and too_busy[1].ok is False  # over 25 %, and over 10 pictures a second
    args = argparse.Namespace(camera_size="1280x720", fps=15, record=60.0, seconds=5.0, runs=3)
    text = markdown(rows, args, "recordings", ((1.0, 2.0, 3.0), (1.5, 2.0, 3.0)))
    assert "| console CPU at 1x, % of one core (median; each run) | 14.0 (12.0, 30.0, 14.0) | < 25 | pass |" in text
    assert "at start 1.00 / 2.00 / 3.00, at the end 1.50 / 2.00 / 3.00" in text
    assert "footage over the store's `/recordings`" in text


def test_a_recording_too_short_for_8x_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--seconds", "5", "--record", "30"])
    assert parse_args(["--seconds", "3", "--record", "32"]).runs == 3
