"""The cluster benchmark's arithmetic (bench/cluster_summary.py) and its table rows (bench/cluster_report.py):
pure functions on made-up measurements; no store, no disk probe, no benchmark."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.cluster_report import build_rows, findings
from bench.cluster_summary import (
    DiskRep,
    StoreRep,
    acks_in_window,
    cameras_worth,
    meets_target,
    noise,
    percentile,
    share_of_limit,
    spread,
    summarise,
)

MB = 2_600_000


def rep(segments: int, seconds: float = 10.0, **kw: float) -> StoreRep:
    return StoreRep(segments=segments, segment_bytes=MB, seconds=seconds, store_cpu_s=kw.get("store", 12.0),
                    generator_cpu_s=kw.get("gen", 1.0), others_cpu_s=kw.get("others", 2.0),
                    latencies_ms=[100.0, 200.0], loop_cpu_s=kw.get("loop", 2.0), backend_cpu_s=kw.get("backend", 0.0))


def test_spread_is_median_and_range_and_says_how_far_apart():
    s = spread([90.0, 110.0, 100.0])
    assert (s.median, s.low, s.high, s.n) == (100.0, 90.0, 110.0, 3)
    assert s.range_pct == pytest.approx(20.0)
    assert s.text() == "100 (median of 3; 90–110, ±10 %)"
    assert spread([5.0]).text(".1f", " ms") == "5.0 ms (1 run)"
    with pytest.raises(ValueError, match="at least one"):
        spread([])


@given(st.lists(st.floats(min_value=0.001, max_value=1e6), min_size=1, max_size=20))
def test_spread_median_lies_within_its_range(values: list[float]) -> None:
    s = spread(values)
    assert s.low <= s.median <= s.high and s.range_pct >= 0


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_acks_in_window_counts_the_half_open_window(times: list[float], a: float, b: float) -> None:
    start, end = min(a, b), max(a, b)
    assert acks_in_window(times, start, end) == len([t for t in times if start <= t < end])


def test_acks_on_the_window_edges():
    assert acks_in_window([1.0, 2.0, 3.0], 1.0, 3.0) == 2  # the start counts, the end does not


def test_cameras_worth_is_one_camera_per_segment_every_ten_seconds():
    assert cameras_worth(30.0) == 300.0
    assert cameras_worth(1.0, segment_s=60) == 60.0


def test_percentile_nearest_rank():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 50))


def test_store_rep_rates():
    r = rep(500, seconds=10.0, store=13.0)
    assert r.segments_per_s == 50.0
    assert r.mb_per_s == pytest.approx(130.0)
    assert r.cpu_ms_per_segment == pytest.approx(26.0)
    assert math.isnan(rep(0).cpu_ms_per_segment) and rep(0, seconds=0).segments_per_s == 0.0
    d = DiskRep(files=400, file_bytes=MB, seconds=4.0, writers=1)
    assert d.files_per_s == 100.0 and d.mb_per_s == pytest.approx(260.0)


def test_summarise_takes_medians_and_pools_latencies_and_refusals():
    reps = [rep(800), rep(1000, loop=3.0), rep(900)]
    reps[1].refused = 2
    s = summarise("sqlite+file", reps)
    assert s.segments_per_s.median == 90.0 and s.segments_per_s.low == 80.0 and s.segments_per_s.high == 100.0
    assert s.cameras.median == 900.0
    assert s.store_cores.median == pytest.approx(1.2) and s.loop_cores.median == pytest.approx(0.2)
    assert s.latency_p50_ms == 100.0 and s.latency_p99_ms == 200.0
    assert s.refused == 2


def test_share_of_limit_pairs_each_repetition_with_its_probe():
    stores = [rep(500), rep(1000)]  # 130 and 260 MB/s
    disks = [DiskRep(1000, MB, 10.0, 1), DiskRep(1000, MB, 10.0, 1)]  # 260 MB/s each
    s = share_of_limit(stores, disks)
    assert (s.low, s.high) == pytest.approx((0.5, 1.0))
    with pytest.raises(ValueError, match="pair each store repetition"):
        share_of_limit(stores, disks[:1])


def test_target_is_eighty_percent_of_the_disk_or_three_hundred_cameras():
    assert meets_target(0.8, 10)
    assert meets_target(0.1, 300)
    assert not meets_target(0.79, 299)


def test_noise_reports_the_rest_of_the_machine_and_the_widest_spread():
    n = noise([rep(100, others=5.0), rep(100, others=15.0)], [spread([90.0, 110.0]), spread([50.0, 100.0])])
    assert n.others_cores.median == pytest.approx(1.0)
    assert n.widest_range_pct == pytest.approx(100 * 50 / 75)


def test_rows_judge_the_file_backend_and_say_why_a_setup_was_not_measured():
    disks = [DiskRep(1000, MB, 10.0, 1)] * 3
    setups = {"sqlite+file": [rep(300), rep(310), rep(290)],  # 30 segments/s: 300 cameras
              "2 × sqlite+file": [rep(450), rep(450), rep(450)]}
    rows = build_rows(disks, disks, setups, {"postgresql+S3": "PostgreSQL is not installed"}, MB, 16, 20)
    capacity = next(r for r in rows if r.setup == "sqlite+file" and r.metric.startswith("ingest capacity"))
    assert capacity.ok is True and "300 cameras' worth" in capacity.value
    assert any(r.setup == "postgresql+S3" and r.value == "not measured: PostgreSQL is not installed" for r in rows)
    assert any(r.setup == "2 × sqlite+file" and r.value == "1.50×" for r in rows)
    assert not any(r.setup == "sqlite+S3" for r in rows)  # neither measured nor said why: nothing to show

    slow = build_rows(disks, disks, {"sqlite+file": [rep(200)] * 3}, {}, MB, 16, 20)
    assert next(r for r in slow if r.metric.startswith("ingest capacity")).ok is False  # 200 cameras, 20 % of disk


def test_findings_name_the_limit_from_the_figures():
    disks = [DiskRep(1000, MB, 10.0, 1)] * 3
    idle = findings(disks, disks, {"sqlite+file": [rep(300, store=5.0)] * 3}, {"SHA-256": 1.5}, 16, cpus=2)
    assert "neither the CPU nor the disk was used up" in idle[0] and "SHA-256 1.5 ms" in idle[1]
    busy = findings(disks, disks, {"sqlite+file": [rep(300, store=17.0)] * 3}, {}, 16, cpus=2)
    assert "the CPU was the limit" in busy[0]


def test_two_cluster_stores_are_compared_with_one_store_of_their_own_kind():
    disks = [DiskRep(1000, MB, 10.0, 1)] * 3
    setups = {"sqlite+file": [rep(600)] * 3, "postgresql+S3": [rep(300, backend=6.0)] * 3,
              "2 × postgresql+S3": [rep(450, backend=8.0)] * 3}
    rows = build_rows(disks, disks, setups, {}, MB, 16, 20)
    pair = [r for r in rows if r.setup == "2 × postgresql+S3"]
    assert pair[0].metric == "ingest capacity (16 node connections × 20 cameras per store)"
    assert any(r.metric == "aggregate over one postgresql+S3 store" and r.value == "1.50×" for r in pair)
    assert any("+ SeaweedFS + PostgreSQL" in r.metric and "0.80 the servers behind it" in r.value for r in pair)
    said = findings(disks, disks, setups, {}, 16, cpus=2)
    assert any("Two postgresql+S3 stores side by side" in f and "1.50× one such store" in f for f in said)
    missing = build_rows(disks, disks, {"sqlite+file": [rep(600)] * 3}, {"2 × postgresql+S3": "no PostgreSQL"}, MB,
                         16, 20)
    assert any(r.setup == "2 × postgresql+S3" and r.value == "not measured: no PostgreSQL" for r in missing)
