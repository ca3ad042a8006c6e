"""Smoke test of the store benchmark (bench/store.py) on a tiny index, so its code cannot rot."""

import asyncio
import sqlite3
from pathlib import Path

import bench.store as bs
from store.ingest.writer import segment_relpath


def test_builder_queries_prune_and_report_on_a_tiny_index(tmp_path: Path) -> None:
    media = bs.make_media(tmp_path / "media", width=160, height=120, fps=15, seconds=bs.SEGMENT_S, shared=1)
    scale = bs.Scale(cameras=2, days=2, events=30)
    built = bs.build_index(tmp_path / "root", scale, media)
    with sqlite3.connect(built.root / "index.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM segments").fetchone() == (scale.rows,)
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (30,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        (path,) = conn.execute("SELECT path FROM segments WHERE camera = 'cam001' ORDER BY start_us").fetchone()
    assert path == str(segment_relpath("cam001", bs.T0_US))  # the oldest day's rows name the store's layout

    plan = bs.Plan(search=1, timeline=1, thumb_miss=1, thumb_hit=1, exports=1, warmup=0)
    with bs.store_process(built.root, tmp_path / "store.log") as (url, startup_s):
        m = asyncio.run(bs.measure(url, built, plan, bs.viewer_token(built.root)))
    m.startup_s = startup_s
    assert m.search_items[0] in (360, 361)  # a 1 h window of 10 s segments
    assert len(m.timeline_ms) == len(m.thumb_miss_ms) == len(m.thumb_hit_ms) == len(m.export_s) == 1
    assert abs(m.export_clip_s[0] - bs.EXPORT_SEGMENTS * bs.SEGMENT_S) < 0.01

    files, link_s = bs.link_oldest_day(built, media.small[0])
    assert files == 2 * bs.SLOTS_PER_DAY
    prune = asyncio.run(bs.prune_oldest_day(built, files, link_s))
    assert prune.deleted == prune.collected == files and prune.left_over_files == 0
    assert bs.real_unlink_cost(tmp_path / "sample", count=20, size=1024) > 0

    rows = bs.rows_for(built, m, prune, media, 10.0, True)
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Results\n\nsystem numbers\n\n## Soak\n\nsoak numbers\n")
    found = bs.findings([(scale, m, prune)], unlink_us=50.0)
    assert any("garbage" in f for f in found) and any("50 µs" in f for f in found)
    body = bs.markdown_section(rows, {"nproc": "2"}, media, [scale], [], quick=True, found=found)
    bs.replace_section(page, bs.SECTION, body)
    bs.replace_section(page, bs.SECTION, body + "\nagain\n")
    text = page.read_text()
    assert text.count(bs.SECTION + "\n") == 1 and "system numbers" in text and "soak numbers" in text
    assert text.rstrip().endswith("again") and "| 2 cameras | thumbnail, cache hit" in text
