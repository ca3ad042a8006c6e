"""The relay load benchmark's table and verdicts (bench/relay_load.py), from made-up rounds."""

from bench.relay_load import MODES, table


def row(mode: str, k: int, p50: float, p99: float) -> dict:
    return {"mode": mode, "round": k, "viewers": 30, "frames": 100, "p50_ms": p50, "p99_ms": p99,
            "node_cpu_pct": 5.0, "store_cpu_pct": 1.0, "node_drops": 0}


def test_the_relays_cost_is_the_median_of_its_differences_to_direct_in_the_same_round() -> None:
    rows = [{"mode": "no viewers", "viewers": 0, "frames": 0, "p50_ms": None, "p99_ms": None,
             "node_cpu_pct": 5.0, "store_cpu_pct": 0.5, "node_drops": 0}]
    for k, (direct, store, separate) in enumerate([(6.0, 7.0, 20.0), (9.0, 8.0, 19.0), (5.0, 9.0, 6.0)]):
        rows += [row(MODES[0], k, 2.0, direct), row(MODES[1], k, 2.5, store), row(MODES[2], k, 2.4, separate)]
    out = table(rows, "640x360", 15, 10.0)
    assert "| direct to nodes | 30 | 300 | 2.0 ms | 6.0 ms (6.0, 9.0, 5.0) |" in out
    assert "| through the store's relay | +0.5 ms | +1.0 ms (+1.0, -1.0, +4.0) | < 5 ms | pass |" in out
    assert "| through a `sht relay` process | +0.4 ms | +10.0 ms (+14.0, +10.0, +1.0) | < 5 ms | FAIL |" in out


def test_the_cpu_finding_is_made_from_the_numbers() -> None:
    from bench.relay_load import cpu_finding

    rows = [row(mode, 0, 2.0, 3.0) | {"node_cpu_pct": cpu} for mode, cpu in zip(MODES, (7.0, 6.0, 6.5), strict=True)]
    rows.append(row("no viewers", 0, 0.0, 0.0) | {"node_cpu_pct": 5.0})
    text = cpu_finding(rows)
    assert "5.0 % with no viewers, 6.0 % and 6.5 %" in text and "7.0 % with all 30" in text
