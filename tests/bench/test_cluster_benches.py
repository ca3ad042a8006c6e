"""Smoke tests of the cluster benchmarks' code, at a tiny scale, so it cannot rot: the queries on PostgreSQL + S3
against SQLite + files (bench/cluster_queries.py) and the store kills under recording nodes
(bench/cluster_failover.py). One real PostgreSQL and SeaweedFS for both, the tests' (tests/store/postgres.py,
tests/store/seaweed.py: fsync off, which the benchmarks keep on)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

import bench.store as bs
from bench import cluster_failover, cluster_queries
from bench.cluster_failover_report import markdown_section as failover_section
from bench.cluster_failover_report import summarise
from store.index import index_path
from tests.store.postgres import PostgresCluster
from tests.store.seaweed import Seaweed


@pytest.fixture(scope="module")
def backends(session_seaweed: Seaweed, module_postgres: PostgresCluster) -> tuple[Seaweed, PostgresCluster]:
    """The run's SeaweedFS and PostgreSQL (tests/servers.py): the benches make their own database and prefix."""
    return session_seaweed, module_postgres


def quiet() -> Console:
    return Console(stderr=True, quiet=True)


def test_queries_bench_copies_the_index_and_measures_both_backends_on_the_same_rows(tmp_path: Path, backends) -> None:
    weed, cluster = backends
    media = bs.make_media(tmp_path / "media", width=160, height=120, fps=15, seconds=bs.SEGMENT_S, shared=1)
    scale = bs.Scale(cameras=2, days=2, events=20)
    plan = bs.Plan(search=2, timeline=2, thumb_miss=2, thumb_hit=2, exports=0, warmup=1)
    thumbs = bs.thumbnail_sample(bs.camera_names(2), scale.days, 2 * (plan.warmup + plan.thumb_miss))  # + warm-up
    prepared, index_url, segments_url = cluster_queries.prepare(tmp_path, scale, media, thumbs, weed, cluster,
                                                                quiet())
    assert prepared.copy.rows["segments"] == scale.rows and prepared.copy.rows["events"] == 20
    assert prepared.flush_s > 0  # the CHECKPOINT and sync ran
    assert prepared.objects == len(thumbs) + 1  # the thumbnails' own segments and the shared one
    with sqlite3.connect(index_path(prepared.built.root)) as lite, psycopg.connect(index_url) as pg:
        query = "SELECT id, camera, start_us, path, sha256 FROM segments ORDER BY id"
        assert lite.execute(query).fetchall() == pg.execute(query).fetchall()
        own = bs.own_path(*next((c, bs.segment_start(at)) for c, at in thumbs))
        assert pg.execute("SELECT COUNT(*) FROM segments WHERE path = %s", [own]).fetchone() == (1,)
        # The store's constraints made again: a second row for a camera and start is refused.
        with pytest.raises(psycopg.errors.UniqueViolation):
            pg.execute("INSERT INTO segments (camera, node, start_us, end_us, frames, size_bytes, sha256, codec, "
                       "width_px, height_px, path, received_us) SELECT camera, node, start_us, end_us, frames, "
                       "size_bytes, sha256, codec, width_px, height_px, path, received_us FROM segments LIMIT 1")

    built, pg_root = prepared.built, tmp_path / "pg"
    tokens = {built.root: bs.viewer_token(built.root), pg_root: bs.viewer_token(pg_root)}
    setups = [cluster_queries.Setup(cluster_queries.BASELINE, built.root, [], [index_path(built.root)]),
              cluster_queries.Setup(cluster_queries.TARGETED, pg_root, ["--index", index_url, "--segments",
                                                                        segments_url],
                                    cluster_queries.database_files(cluster, index_url), weed.env())]
    measured = cluster_queries.measure_rounds(setups, built, plan, 1, thumbs, tokens, tmp_path, quiet(), settle_s=0.5)
    assert measured.warmup is not None and len(measured.rounds) == 1
    for m in [*measured.pooled.values(), *measured.warmup.values()]:  # the warm-up round's kept apart, not pooled
        assert len(m.search_ms) == len(m.timeline_ms) == len(m.thumb_miss_ms) == len(m.thumb_hit_ms) == 2
    rows = cluster_queries.data_rows(prepared, media) + cluster_queries.result_rows(measured.pooled)
    assert [r.ok is not None for r in rows].count(True) == len(cluster_queries.METRICS)  # the target's rows
    body = cluster_queries.markdown_section(rows, {"nproc": "2"}, plan, 1, media, True,
                                            cluster_queries.findings(measured, prepared))
    assert "| postgresql+S3 | thumbnail, cache miss" in body and "× sqlite+file" in body
    assert "Thumbnail-miss p99 by round" in body and "warm-up round" in body


def test_failover_bench_kills_a_store_and_accounts_for_every_segment(tmp_path: Path, backends) -> None:
    weed, cluster = backends
    run = cluster_failover.run(1, 1, 1, tmp_path, quiet(), cluster.create_database(), weed.url(prefix="smoke"),
                               weed.env(), warmup_s=1.5, settle_s=1.0)
    assert len(run.kills) == 1 and list(run.kills[0].moved_s) == run.kills[0].nodes == ["fn00"]
    summary = summarise(run)
    assert summary.ok, [(r.metric, r.value) for r in summary.rows]
    assert len(summary.first_ack_s) == 1 and 0 < summary.first_ack_s[0] < 10
    assert summary.gap_s and max(summary.gap_s) < 0.5
    body = failover_section(summary, {"nproc": "2"}, run, True, 1, 1, cluster_failover.FPS, cluster_failover.SIZE)
    assert "| duplicates:" in body and "| pass |" in body


def test_thumbnail_sample_is_fixed_before_the_index_and_lands_after_the_oldest_day() -> None:
    cams = bs.camera_names(3)
    sample = bs.thumbnail_sample(cams, 2, 10)
    assert sample == bs.thumbnail_sample(cams, 2, 10)
    assert len({(c, bs.segment_start(at)) for c, at in sample}) == 10
    assert all(at >= bs.T0_US + bs.DAY_US and c in cams for c, at in sample)
