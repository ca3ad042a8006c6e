"""The abuse benchmark (bench/abuse.py): its table, and one quick row against a real store and node."""

from __future__ import annotations

from pathlib import Path

import bench.abuse as ba


def _result(**changes: object) -> ba.RowResult:
    fields: dict = dict(row=7, what="floods", rss_peak_mib=90.0, temp_peak_mib=0.0, health_p99_ms=8.0,
                        health_failures=0, ack_delay_max_s=1.5, ingest_timeouts=0, link_errors=0, lost=0,
                        duplicates=0, attacker_got="closed 1009 | too big", stored=8)
    return ba.RowResult(**(fields | changes))


def test_a_row_meets_the_targets_only_when_every_measure_does():
    assert _result().ok
    assert not _result(rss_peak_mib=401.0).ok
    assert not _result(temp_peak_mib=2048.0).ok
    assert not _result(health_p99_ms=150.0).ok
    assert not _result(ingest_timeouts=1).ok
    assert not _result(lost=1).ok and not _result(duplicates=1).ok
    assert not _result(store_restarted=True).ok


def test_the_markdown_table_has_one_line_per_row_and_escapes_pipes():
    table = ba.markdown_table([_result(), _result(row=1, rss_peak_mib=3000.0)]).splitlines()
    assert len(table) == 4 and table[0].count("|") == len(ba.HEADERS) + 1
    assert "closed 1009 \\| too big" in table[2] and table[2].endswith("| pass |")
    assert table[3].startswith("| 1 |") and "3000 MiB" in table[3] and table[3].endswith("| FAIL |")


def test_p99_of_few_samples_is_the_largest():
    assert ba.p99([1.0, 2.0, 50.0]) == 50.0
    assert ba.p99(list(map(float, range(1, 201)))) == 198.0


def test_one_row_against_a_real_store_writes_its_section(tmp_path: Path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n## Store\n\nkept\n")
    ba.main(["--rows", "5", "--seconds", "3", "--warmup", "1", "--output", str(output), "--tmp", str(tmp_path)])
    text = output.read_text()
    assert "## Store\n\nkept\n" in text and "## Abuse" in text
    (line,) = [row for row in text.splitlines() if row.startswith("| 5 |")]
    assert "JSON request nested 30,000 deep" in line and "`bad-json`" in line
