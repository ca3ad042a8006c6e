"""The motion benchmark's bookkeeping: scenes load, activity merging, storage rule, docs section rewrite."""

from __future__ import annotations

import pytest

from bench.__main__ import other_sections
from bench.motion import SECTION, load_scenes, merge, storage_saved, write_section
from node.sources.scenario import load_scenario


def test_every_bench_scene_and_its_motion_config_loads():
    scenes = load_scenes(None, None)
    assert {s.kind for s in scenes} == {"objects", "static"}
    assert [s.name for s in scenes if s.storage] == ["activity20", "activity20_mixed"]
    for s in scenes:
        sc = load_scenario(str(s.path))
        assert bool(sc.objects) == (s.kind == "objects")
    assert any(z for s in scenes for z in s.config.zones)


def test_merge_joins_intervals_closer_than_the_gap():
    assert merge([(5, 6), (0, 1), (2.5, 3)], 2.0) == [(0, 3), (5, 6)]
    assert merge([(0, 1), (4, 5)], 2.0) == [(0, 1), (4, 5)]


def test_storage_keeps_segments_within_the_roll_of_an_event():
    # 60 s, 10 s segments; an event at 31..33 wants [26, 43): segments 20-30, 30-40, 40-50, trimmed to
    # the keyframe intervals from 26 s to 43 s, so 17 s of 60 are kept.
    assert storage_saved([(31.0, 33.0)], 60.0) == pytest.approx(1 - 17 / 60)
    assert storage_saved([], 60.0) == 1.0


def test_the_motion_section_is_replaced_and_the_rest_kept(tmp_path):
    page = tmp_path / "b.md"
    page.write_text("# B\n\n## Results\n\nr\n\n" + SECTION + "\n\nold\n\n## Soak\n\ns\n")
    write_section(page, SECTION + "\n\nnew\n")
    text = page.read_text()
    assert "new" in text and "old" not in text and "## Results\n\nr" in text and "## Soak\n\ns" in text
    assert [s.split("\n")[0] for s in other_sections(text)] == [SECTION, "## Soak"]
