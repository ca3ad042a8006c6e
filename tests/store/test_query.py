"""Index queries against a real index: a SQLite file and a PostgreSQL database (the index_url fixture)."""

import pytest

from shared.protocol.control import Hello
from shared.protocol.health import NodeHealth
from shared.protocol.ingest import SegmentHeader
from shared.protocol.query import ListParams, TimelineParams, TimeRange
from shared.settings import MOTION, SettingError
from store.index import query, settings, timeline
from store.index.db import Index
from store.nodes.fleet import Fleet

S = 1_000_000
T0 = 1_800_000_000 * S  # a round start, so minute/hour buckets line up


@pytest.fixture
async def index(index_url):
    idx = await Index.open(index_url)
    yield idx
    await idx.close()


async def add_segment(index, camera, start, seconds=10, node="node0"):
    header = SegmentHeader(node=node, camera=camera, start_us=start, end_us=start + seconds * S, frames=seconds * 15,
                           bytes=100, sha256="0" * 64)
    await index.insert_segment(header, f"segments/{camera}/{start}.mp4", start)


async def test_segments_by_camera_and_range_paged(index):
    for i in range(30):
        await add_segment(index, "cam0", T0 + i * 10 * S)
        await add_segment(index, "cam1", T0 + i * 10 * S + S)
    rng = TimeRange(T0 + 55 * S, T0 + 155 * S)  # starts inside the segment at 50 s
    page = await query.list_segments(index.conn, ListParams(rng, ("cam0",), limit=4))
    assert [s.start_us for s in page.items] == [T0 + k * 10 * S for k in (5, 6, 7, 8)]
    seen = list(page.items)
    while page.next:
        page = await query.list_segments(index.conn, ListParams(rng, ("cam0",), limit=4, after=page.next))
        seen += page.items
    assert [s.start_us for s in seen] == [T0 + k * 10 * S for k in range(5, 16)]
    both = await query.list_segments(index.conn, ListParams(rng, ()))
    assert {s.camera for s in both.items} == {"cam0", "cam1"}


async def test_timeline_intervals_gaps_and_buckets(index):
    for i in list(range(0, 6)) + list(range(12, 18)):  # one minute recorded, one missing, one recorded
        await add_segment(index, "cam0", T0 + i * 10 * S)
    await index.conn.execute(
        "INSERT INTO events (camera, node, start_us, end_us, kind, score) "
        "VALUES ('cam0', 'node0', ?, ?, 'motion', 0.9)",
        (T0 + 125 * S, T0 + 130 * S))
    await index.conn.commit()
    t = await timeline.timeline(index.conn, TimelineParams("cam0", TimeRange(T0, T0 + 240 * S), "minute"))
    assert t.intervals == ((T0, T0 + 60 * S), (T0 + 120 * S, T0 + 180 * S))
    assert t.gaps == ((T0 + 60 * S, T0 + 120 * S), (T0 + 180 * S, T0 + 240 * S))
    assert [b.segments for b in t.buckets] == [6, 0, 6, 0]
    assert [b.recorded_us for b in t.buckets] == [60 * S, 0, 60 * S, 0]
    assert [b.events for b in t.buckets] == [0, 0, 1, 0]


async def test_segment_near_and_known_cameras(index):
    await add_segment(index, "cam0", T0)
    await add_segment(index, "cam0", T0 + 100 * S)
    await add_segment(index, "cam2", T0)
    assert (await query.segment_near(index.conn, "cam0", T0 + 5 * S))[1] == T0
    assert (await query.segment_near(index.conn, "cam0", T0 + 90 * S))[1] == T0 + 100 * S
    assert (await query.segment_near(index.conn, "cam0", T0 - 50 * S))[1] == T0
    assert await query.segment_near(index.conn, "cam9", T0) is None
    assert await query.known_cameras(index.conn) == {"cam0", "cam2"}


async def test_settings_history_and_validation(index):
    assert (await settings.camera_settings(index.conn, "cam0"))["recording_mode"] == "continuous"
    assert await settings.set_setting(index.conn, "cam0", "recording_mode", "motion", "ops", 5) == ("continuous",
                                                                                                  "motion")
    await settings.set_setting(index.conn, "cam0", "retention_days", 7, "ops", 6)
    history = await settings.history(index.conn, "cam0", 10)
    assert [(h["key"], h["old"], h["new"], h["changed_by"]) for h in history] == [
        ("retention_days", None, 7, "ops"), ("recording_mode", "continuous", "motion", "ops")]
    with pytest.raises(SettingError, match="recording_mode must be one of"):
        await settings.set_setting(index.conn, "cam0", "recording_mode", "sometimes", "ops", 7)
    with pytest.raises(SettingError, match="unknown setting"):
        await settings.set_setting(index.conn, "cam0", "colour", 1, "ops", 7)
    with pytest.raises(SettingError, match="between 0 and 1"):
        await settings.set_setting(index.conn, "cam0", "motion_sensitivity", 3, "ops", 7)
    assert len(await settings.history(index.conn, None, 10)) == 2


async def test_a_list_of_labels_is_stored_with_its_history(index):
    assert await settings.set_setting(index.conn, "cam0", "objects", ["person", "car"], "ops", 5) == (
        ["person"], ["person", "car"])
    assert (await settings.load(index.conn, "cam0")).objects == ("person", "car")
    await settings.set_setting(index.conn, "cam0", "objects", [], "ops", 6)
    assert (await settings.load(index.conn, "cam0")).objects == ()
    assert [(h["old"], h["new"]) for h in await settings.history(index.conn, "cam0", 10)] == [
        (["person", "car"], []), (["person"], ["person", "car"])]
    with pytest.raises(SettingError, match="objects lists 'car' more than once"):
        await settings.set_setting(index.conn, "cam0", "objects", ["car", "car"], "ops", 7)
    await index.conn.execute("INSERT INTO settings (camera, key, value, changed_us, changed_by) "
                             "VALUES ('cam1', 'objects', '\"person\"', 0, 'hand edit')")
    await index.conn.commit()
    assert (await settings.load(index.conn, "cam1")).objects == ("person",)  # not a list: the default


async def test_a_stored_value_the_spec_no_longer_allows_reads_as_the_default(index):
    await settings.set_setting(index.conn, "cam0", "recording_mode", "motion", "ops", 5)
    await index.conn.execute("INSERT INTO settings (camera, key, value, changed_us, changed_by) "
                             "VALUES ('cam0', 'motion_sensitivity', '7', 0, 'hand edit')")
    await index.conn.commit()
    loaded = await settings.load(index.conn, "cam0")
    assert loaded.recording_mode == MOTION and loaded.motion_sensitivity == 0.5
    assert await settings.camera_settings(index.conn, "cam0") == loaded.to_json()


async def test_fleet_marks_nodes_down_after_missed_heartbeats_and_up_again(index):
    clock = [0.0]
    fleet = Fleet(index.conn, lambda: int(clock[0] * S), clock=lambda: clock[0])
    link = object()
    await fleet.hello(Hello("node0", 8000, ("cam0", "cam1")), "10.0.0.5", link)
    assert fleet.nodes["node0"].state == "up" and fleet.nodes["node0"].url == "http://10.0.0.5:8000"
    for _ in range(5):
        clock[0] += 2
        fleet.heartbeat("node0", NodeHealth.from_json({"cpu_percent": 10, "cameras": {"cam0": {"fps": 15}}}))
    assert fleet.check() == [] and len(fleet.nodes["node0"].history) == 5
    assert fleet.nodes["node0"].history[-1].cameras["cam0"].fps == 15
    clock[0] += 7
    assert fleet.check() == ["node0"] and fleet.nodes["node0"].state == "down"
    await fleet.hello(Hello("node0", 8000, ("cam0", "cam1")), "10.0.0.5", link)
    assert fleet.nodes["node0"].state == "up" and fleet.node_of("cam1") == "node0"
    await fleet.link_closed("node0", link)
    assert fleet.nodes["node0"].state == "down"
    reloaded = Fleet(index.conn, lambda: 0)
    await reloaded.load()
    assert reloaded.nodes["node0"].cameras == ("cam0", "cam1")
