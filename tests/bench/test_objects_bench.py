"""The object benchmark's table and section (bench/objects.py) from made-up results: no video, no model."""

from pathlib import Path

import pytest

import bench.objects as bo


def clip(name: str, best: list[float], fps: float = 10.0) -> bo.ClipResult:
    c = bo.ClipResult(name, 768, 576, fps, frames_total=len(best))
    c.times_s = [i / fps for i in range(len(best))]
    c.best = best
    c.infer_ms = [8.0 + (i % 3) for i in range(len(best))]
    c.cpu_ms = [10.0] * len(best)
    c.decode_ms = [0.5] * len(best)
    return c


def test_table_counts_thresholds_windows_and_verdicts(tmp_path: Path) -> None:
    # vtest: 2 s; the first second has 3 frames >= 0.7, the second only 2
    vtest = clip("vtest", [0.9, 0.8, 0.75, 0.6, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0,
                           0.95, 0.72, 0.55, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    tree = clip("tree", [0.1, 0.2, 0.0], fps=2.0)
    rows = {r[0]: r for r in bo.table_rows({"vtest": vtest, "tree": tree})}
    assert rows["frames analysed"][1:3] == ("20", "3")
    assert rows["frames with a person >= 0.5"][1] == "8 / 20 (40%)"
    assert rows["frames with a person >= 0.7"][1:3] == ("5 / 20 (25%)", "0 / 3 (0%)")
    assert rows["frames with a person >= 0.7"][4] is True
    assert rows["best person score"][1:3] == ("0.950", "0.200")
    window = next(r for name, r in rows.items() if name.startswith("1 s windows"))
    assert window[1:3] == ("1 / 2 (50%)", "0 / 2 (0%)") and window[4] is False  # vtest below 95 %
    assert rows["inference p50 / p99, 1 thread"][4] is True
    assert rows["frames analysed per second per core (scale + infer + decode boxes)"][1] == "100"

    text = bo.table_markdown(list(rows.values()))
    assert text.splitlines()[0].startswith("| metric | vtest.avi") and "| FAIL |" in text and "| pass |" in text

    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Results\n\nsystem\n\n## Store\n\nstore\n")
    bo.replace_section(page, bo.SECTION, bo.markdown_section(list(rows.values()), {"cpu": "test"}, step=1))
    out = page.read_text()
    assert out.count("## Objects\n") == 1 and "system" in out and "store" in out
    assert "Detector-level numbers" in out and "Objects: events" in out


def test_missing_clip_shows_a_dash_and_main_names_the_package(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rows = bo.table_rows({"vtest": clip("vtest", [0.9] * 10)})
    assert all(r[2] == "-" for r in rows)
    assert bo.main(["--data", str(tmp_path), "--no-write"]) == 2
    assert "apt-get install opencv-doc" in capsys.readouterr().err
