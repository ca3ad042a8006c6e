"""Retention on real SQLite indexes and real files (small fake segment bytes)."""

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.ingest import SegmentHeader, sha256_hex
from store.app import Store
from store.index.db import Index
from store.index.migrations import SCHEMA_VERSION
from store.ingest import writer as ingest_module
from store.ingest.writer import Ingestor, KeyedLocks, segment_relpath
from store.maintenance import garbage, retention
from store.maintenance.check import check_store
from store.maintenance.lockfile import StoreBusy
from store.maintenance.retention import DAY_US, RetentionPolicy, RetentionTask, StoreUsage, sweep
from store.media import files as media_files  # the file backend's helpers: tests put failures in their place
from tests.store.real_segments import real_mp4

NOW = 1_795_000_000_000_000  # 2026-11-18
HOUR = 3_600_000_000
SIZE = 1000


@pytest.fixture
async def index(tmp_path):
    idx = await Index.open(tmp_path / "index.sqlite3")
    yield idx
    await idx.close()


def header(camera: str, start: int, data: bytes, length: int = 10_000_000) -> SegmentHeader:
    return SegmentHeader(node="node0", camera=camera, start_us=start, end_us=start + length, frames=1,
                         bytes=len(data), sha256=sha256_hex(data))


async def add(index: Index, root: Path, camera: str, start: int, size: int = SIZE) -> Path:
    data = start.to_bytes(8, "big") * (size // 8) + b"x" * (size % 8)
    rel = segment_relpath(camera, start)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    await index.insert_segment(header(camera, start, data), str(rel), start)
    return root / rel


def rows(root: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute("SELECT camera, start_us FROM segments ORDER BY start_us, camera").fetchall()


async def lock_event(index: Index, camera: str, start: int, end: int, locked: int = 1) -> None:
    await index.conn.execute(
        "INSERT INTO events (camera, node, start_us, end_us, kind, score, locked) VALUES (?, 'node0', ?, ?, "
        "'motion', 0.9, ?)", (camera, start, end, locked))
    await index.conn.commit()


async def interleaved(index: Index, root: Path, n: int = 10) -> list[tuple[str, int]]:
    """n segments, two cameras alternating, each one hour after the previous; oldest first."""
    made = []
    for i in range(n):
        camera, start = f"cam{i % 2}", NOW - (n - i) * HOUR
        await add(index, root, camera, start)
        made.append((camera, start))
    return made


@pytest.fixture(params=[retention.BATCH_ROWS, 3], ids=["batch-default", "batch-3"])
def batch(request, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", request.param)
    return request.param


async def test_age_limit_deletes_expired_segments_and_their_empty_directories(index, tmp_path, batch):
    ages_days = [40, 35, 31, 29, 1]
    paths = [await add(index, tmp_path, f"cam{i % 2}", NOW - d * DAY_US) for i, d in enumerate(ages_days)]
    report = await sweep(index, tmp_path, RetentionPolicy(), NOW)
    assert report.deleted == 3 and report.by_reason == {"age": 3, "size": 0, "free": 0}
    assert report.bytes_freed == 3 * SIZE
    assert all(p.exists() for p in paths) and await garbage.pending(index.conn) == (3, 3 * SIZE)  # files: next
    collected = await garbage.collect(index.conn, tmp_path)
    assert (collected.files, collected.bytes, collected.errors) == (3, 3 * SIZE, 0)
    assert await garbage.pending(index.conn) == (0, 0)
    assert [p.exists() for p in paths] == [False, False, False, True, True]
    assert rows(tmp_path) == [("cam1", NOW - 29 * DAY_US), ("cam0", NOW - DAY_US)]
    assert report.oldest_remaining_us == NOW - 29 * DAY_US
    assert not paths[0].parent.exists() and not paths[0].parent.parent.exists()  # hour and day dirs
    assert (tmp_path / "segments" / "cam0").is_dir()  # camera directories stay


async def test_a_segment_straddling_the_age_cutoff_stays(index, tmp_path):
    start = NOW - 30 * DAY_US - 5_000_000  # ends 5 s after the cutoff
    await add(index, tmp_path, "cam0", start)
    assert (await sweep(index, tmp_path, RetentionPolicy(), NOW)).deleted == 0


async def test_size_limit_deletes_the_oldest_across_cameras(index, tmp_path, batch):
    made = await interleaved(index, tmp_path)
    usage = await StoreUsage.load(index)
    report = await sweep(index, tmp_path, RetentionPolicy(max_bytes=6500), NOW, usage=usage)
    assert report.deleted == 4 and report.by_reason["size"] == 4
    assert rows(tmp_path) == sorted(made[4:], key=lambda r: r[1])
    assert usage.total_bytes == 6000 and usage.segments == 6
    assert {c: s.segments for c, s in report.by_camera.items()} == {"cam0": 2, "cam1": 2}
    assert report.by_camera["cam0"].oldest_remaining_us == made[4][1]


@pytest.mark.parametrize("policy", [RetentionPolicy(min_free_bytes=5000), RetentionPolicy(min_free_percent=5)])
async def test_free_space_limit_counts_what_it_deletes_without_restating(index, tmp_path, monkeypatch, policy):
    made = await interleaved(index, tmp_path)
    stats = []

    def disk(root):
        stats.append(root)
        return 100_000, 2000

    monkeypatch.setattr(retention, "_disk_usage", disk)
    report = await sweep(index, tmp_path, policy, NOW)
    assert report.deleted == 3 and report.by_reason["free"] == 3 and report.unmet_bytes == 0
    assert rows(tmp_path) == made[3:]
    assert len(stats) == 1  # one look at the disk per sweep


async def test_locked_events_protect_overlapping_segments_from_every_limit(index, tmp_path, batch):
    made = await interleaved(index, tmp_path)
    # Overlaps made[1] (cam1) only; a locked event on another camera and an unlocked one protect nothing.
    await lock_event(index, "cam1", made[1][1] + 5_000_000, made[1][1] + 20_000_000)
    await lock_event(index, "cam0", made[1][1], made[1][1] + 10_000_000)
    await lock_event(index, "cam0", made[2][1], made[2][1] + 10_000_000, locked=0)
    report = await sweep(index, tmp_path, RetentionPolicy(max_age_us=None, max_bytes=7000), NOW)
    assert report.deleted == 3 and report.skipped_locked == 1
    assert rows(tmp_path)[0] == made[1] and made[0] not in rows(tmp_path) and made[3] not in rows(tmp_path)
    report = await sweep(index, tmp_path, RetentionPolicy(max_age_us=1), NOW)  # everything has expired
    assert rows(tmp_path) == [made[1]] and report.skipped_locked == 1


async def test_when_everything_left_is_locked_the_shortfall_is_reported(index, tmp_path):
    await add(index, tmp_path, "cam0", NOW - HOUR)
    await lock_event(index, "cam0", NOW - 2 * HOUR, NOW)
    report = await sweep(index, tmp_path, RetentionPolicy(max_bytes=10), NOW)
    assert report.deleted == 0 and report.unmet_bytes == SIZE - 10


async def test_per_camera_retention_setting_overrides_the_age_limit(index, tmp_path, batch):
    for camera in ("cam0", "cam1", "cam2", "cam3"):
        for days in (60, 40, 10, 1):
            await add(index, tmp_path, camera, NOW - days * DAY_US)
    for camera, value in (("cam1", "2"), ("cam2", "90"), ("cam3", "null")):
        await index.conn.execute("INSERT INTO settings (camera, key, value, changed_us, changed_by) "
                                 "VALUES (?, 'retention_days', ?, 0, 'test')", (camera, value))
    await index.conn.commit()
    await sweep(index, tmp_path, RetentionPolicy(), NOW)
    left: dict[str, list[int]] = {}
    for camera, start in rows(tmp_path):
        left.setdefault(camera, []).append((NOW - start) // DAY_US)
    assert left == {"cam0": [10, 1], "cam1": [1], "cam2": [60, 40, 10, 1], "cam3": [10, 1]}


async def test_dry_run_deletes_nothing_and_reports_what_a_real_run_deletes(index, tmp_path, monkeypatch, batch):
    made = await interleaved(index, tmp_path, n=12)
    await add(index, tmp_path, "cam2", NOW - 40 * DAY_US)
    await lock_event(index, "cam0", made[2][1], made[2][1] + 1)
    monkeypatch.setattr(retention, "_disk_usage", lambda root: (100_000, 500))
    policy = RetentionPolicy(max_bytes=9000, min_free_bytes=6000)
    before = rows(tmp_path)
    files = sorted(p for p in (tmp_path / "segments").rglob("*.mp4"))
    dry = await sweep(index, tmp_path, policy, NOW, dry_run=True)
    assert rows(tmp_path) == before and sorted((tmp_path / "segments").rglob("*.mp4")) == files
    real = await sweep(index, tmp_path, policy, NOW)
    for name in ("deleted", "bytes_freed", "by_reason", "by_camera", "oldest_remaining_us", "skipped_locked",
                 "unmet_bytes"):
        assert getattr(dry, name) == getattr(real, name), name
    assert dry.dry_run and not real.dry_run
    # age: cam2's; size: 12000 -> 9000 (made[2] is locked); free: 500 + 1000 + 3000 freed, 1500 short -> 2 more
    assert real.by_reason == {"age": 1, "size": 3, "free": 2}
    assert len(rows(tmp_path)) == len(before) - real.deleted


class PowerCut(Exception):
    pass


async def test_a_crash_before_the_files_go_leaves_them_listed_and_the_next_start_deletes_them(
        index, tmp_path, monkeypatch):
    made = await interleaved(index, tmp_path, n=4)
    pending = [str(segment_relpath(c, s)) for c, s in made[:2]]

    def crash(root, paths):
        raise PowerCut  # the rows are in garbage, no file unlinked yet

    monkeypatch.setattr(media_files, "unlink_segments", crash)
    await sweep(index, tmp_path, RetentionPolicy(max_bytes=2000), NOW)
    with pytest.raises(PowerCut):
        await garbage.collect(index.conn, tmp_path)
    assert rows(tmp_path) == made[2:] and all((tmp_path / p).exists() for p in pending)
    report = await check_store(tmp_path, index)
    assert report.ok and report.pending_deletion == 2  # listed for deletion: not orphans to re-index
    monkeypatch.undo()
    task = RetentionTask(tmp_path, RetentionPolicy(max_age_us=None), interval_s=3600, min_gap_s=0)
    await task.start()  # the store starting again
    try:
        await asyncio.wait_for(_until(lambda: task.collected_files_total == 2), 5)
    finally:
        await task.stop()
    assert not any((tmp_path / p).exists() for p in pending)
    assert await garbage.pending(index.conn) == (0, 0)
    assert (await check_store(tmp_path, index, deep=True)).ok and rows(tmp_path) == made[2:]


async def test_check_repair_deletes_what_retention_left_to_delete(index, tmp_path):
    made = await interleaved(index, tmp_path, n=3)
    await sweep(index, tmp_path, RetentionPolicy(max_bytes=SIZE), NOW)
    repaired = await check_store(tmp_path, index, repair=True)
    assert repaired.pending_deletion == 2 and any("deleted 2 files" in r for r in repaired.repaired)
    assert not (tmp_path / segment_relpath(*made[0])).exists() and (tmp_path / segment_relpath(*made[2])).exists()
    assert (await check_store(tmp_path, index)).pending_deletion == 0


async def test_pending_deletions_count_as_free_space(index, tmp_path, monkeypatch):
    made = await interleaved(index, tmp_path, n=6)
    monkeypatch.setattr(retention, "_disk_usage", lambda root: (100_000, 3000))
    policy = RetentionPolicy(min_free_bytes=5000)
    assert (await sweep(index, tmp_path, policy, NOW)).deleted == 2
    # The files have not gone yet, so the disk still says 3000 free: the sweep must not delete again.
    assert (await sweep(index, tmp_path, policy, NOW)).deleted == 0
    assert rows(tmp_path) == made[2:]


async def test_collect_waits_for_a_resend_being_ingested_and_keeps_its_file(index, tmp_path):
    made = await interleaved(index, tmp_path, n=2)
    assert (await sweep(index, tmp_path, RetentionPolicy(max_bytes=SIZE), NOW)).deleted == 1
    camera, start = made[0]
    locks = KeyedLocks()
    held, release = asyncio.Event(), asyncio.Event()

    async def resend():  # the node sends the deleted segment again: same identity, same path
        async with locks.hold(f"{camera}-{start}"):
            held.set()
            await release.wait()
            await add(index, tmp_path, camera, start)

    holder = asyncio.create_task(resend())
    await held.wait()
    task = asyncio.create_task(garbage.collect(index.conn, tmp_path, locks=locks))
    await asyncio.sleep(0.2)
    assert not task.done() and (tmp_path / segment_relpath(camera, start)).exists()
    release.set()
    report = await task
    await holder
    assert (report.files, report.kept) == (0, 1)
    assert rows(tmp_path) == made and (tmp_path / segment_relpath(camera, start)).exists()  # row and file
    assert await garbage.pending(index.conn) == (0, 0) and (await check_store(tmp_path, index, deep=True)).ok


async def test_ingest_keeps_the_running_total_and_pokes_retention_over_the_size_limit(index, tmp_path):
    data = real_mp4()
    size = len(data)
    task = RetentionTask(tmp_path, RetentionPolicy(max_bytes=3 * size), interval_s=3600, min_gap_s=0)
    await task.start()
    try:
        await asyncio.wait_for(_until(lambda: task.sweeps == 1), 5)  # the sweep at start
        ingestor = Ingestor(tmp_path, index, hooks=task)
        for i in range(5):
            start = NOW + i * HOUR
            await ingestor.ingest(header("cam0", start, data), memoryview(data))
        await asyncio.wait_for(_until(lambda: task.usage.total_bytes <= 3 * size), 5)
        assert [s for _, s in rows(tmp_path)] == [NOW + i * HOUR for i in (2, 3, 4)]
        assert task.usage == StoreUsage(total_bytes=3 * size, segments=3)
    finally:
        await task.stop()


async def test_low_free_space_seen_by_ingest_pokes_retention(index, tmp_path, monkeypatch):
    made = await interleaved(index, tmp_path, n=3)
    free = {"bytes": 10**12}
    monkeypatch.setattr(retention, "_disk_usage", lambda root: (2 * 10**12, free["bytes"]))
    monkeypatch.setattr(ingest_module, "_free_bytes", lambda root: free["bytes"])
    task = RetentionTask(tmp_path, RetentionPolicy(min_free_bytes=10**9), interval_s=3600, min_gap_s=0)
    await task.start()
    try:
        await asyncio.wait_for(_until(lambda: task.sweeps == 1), 5)
        assert rows(tmp_path)[:3] == made
        free["bytes"] = 10**9 - 1500  # now under the floor: two segments must go
        data = real_mp4()
        await Ingestor(tmp_path, index, hooks=task).ingest(header("cam0", NOW, data), memoryview(data))
        await asyncio.wait_for(_until(lambda: task.sweeps == 2), 5)
        assert task.last_report is not None and task.last_report.by_reason["free"] == 2
        assert rows(tmp_path) == [made[2], ("cam0", NOW)]
    finally:
        await task.stop()


async def test_store_runs_retention_and_holds_the_root_lock(tmp_path):
    index = await Index.open(tmp_path / "index.sqlite3")
    await add(index, tmp_path, "cam0", NOW - 400 * DAY_US)
    await index.close()
    store = Store(tmp_path, RetentionPolicy(max_age_us=DAY_US))
    await store.start("127.0.0.1", 0)
    try:
        assert store.retention is not None
        await asyncio.wait_for(_until(lambda: store.retention.sweeps >= 1), 5)
        assert rows(tmp_path) == []
        with pytest.raises(StoreBusy, match="store pid"):
            await Store(tmp_path).start("127.0.0.1", 0)
    finally:
        await store.stop()
    second = Store(tmp_path)  # the lock went with stop()
    await second.start("127.0.0.1", 0)
    await second.stop()


async def _until(predicate) -> None:
    """Poll: the conditions are plain attributes of the task under test, with nothing to wait on."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0.01)



async def test_an_index_from_before_the_garbage_table_is_upgraded_in_place(tmp_path):
    db = tmp_path / "index.sqlite3"
    old = await Index.open(db)
    await add(old, tmp_path, "cam0", NOW - 40 * DAY_US)
    await old.conn.execute("DROP TABLE garbage")
    await old.conn.execute("DROP TABLE coverage_hours")  # version 1 had neither
    await old.conn.execute("UPDATE schema_version SET version = 1")
    await old.conn.commit()
    await old.close()
    index = await Index.open(db)  # what a store of this version does at start
    try:
        async with index.conn.execute("SELECT version FROM schema_version") as cur:
            assert await cur.fetchall() == [(SCHEMA_VERSION,)]  # through every upgrade to today's
        hour = (NOW - 40 * DAY_US) // HOUR * HOUR
        async with index.conn.execute("SELECT camera, hour_us, dirty FROM coverage_hours") as cur:
            assert await cur.fetchall() == [("cam0", hour, 1)]  # its footage is marked for summarising
        assert (await sweep(index, tmp_path, RetentionPolicy(), NOW)).deleted == 1
        assert (await garbage.collect(index.conn, tmp_path)).files == 1
    finally:
        await index.close()


async def test_an_index_from_a_newer_store_is_refused(tmp_path):
    db = tmp_path / "index.sqlite3"
    await (await Index.open(db)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        await Index.open(db)


async def test_collect_keeps_the_files_of_locked_segments_inside_a_deleted_range(index, tmp_path):
    paths = [await add(index, tmp_path, "cam0", NOW - 40 * DAY_US + i * 10_000_000) for i in range(5)]
    locked_start = NOW - 40 * DAY_US + 2 * 10_000_000
    await lock_event(index, "cam0", locked_start + 1, locked_start + 2)
    report = await sweep(index, tmp_path, RetentionPolicy(), NOW)
    assert report.deleted == 4 and report.skipped_locked == 1
    collected = await garbage.collect(index.conn, tmp_path)
    assert (collected.files, collected.kept, collected.errors) == (4, 1, 0)
    assert [p.exists() for p in paths] == [False, False, True, False, False]
    assert await garbage.pending(index.conn) == (0, 0)
    assert (await check_store(tmp_path, index, deep=True)).ok


def test_ranges_merge_and_answer_membership():
    ranges = garbage.Ranges([(50, 60), (10, 20), (15, 30), (61, 61)])
    assert list(ranges) == [(10, 30), (50, 60), (61, 61)]
    assert [x in ranges for x in (9, 10, 25, 30, 31, 49, 50, 60, 61, 62)] == [
        False, True, True, True, False, False, True, True, True, False]


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 100)), min_size=1, max_size=20),
       st.lists(st.integers(-10, 1200), max_size=50))
def test_ranges_membership_is_that_of_the_union(spans, probes):
    intervals = [(lo, lo + width) for lo, width in spans]
    ranges = garbage.Ranges(intervals)
    for x in probes:
        assert (x in ranges) == any(lo <= x <= hi for lo, hi in intervals)


async def test_a_range_that_cannot_be_finished_keeps_its_rows_and_does_not_hold_up_the_others(
        index, tmp_path, monkeypatch):
    old = [await add(index, tmp_path, "cam0", NOW - 60 * DAY_US + i * 10_000_000) for i in range(2)]
    newer = [await add(index, tmp_path, "cam0", NOW - 40 * DAY_US + i * 10_000_000) for i in range(3)]
    real = media_files.unlink_segments

    def unlink(root, paths):  # the old day's files cannot be deleted (a read-only mount, an I/O error)
        keep = [p for p in paths if str(old[0].parent.relative_to(root)) in p]
        return real(root, [p for p in paths if p not in keep]) + len(keep)

    monkeypatch.setattr(media_files, "unlink_segments", unlink)
    report = await sweep(index, tmp_path, RetentionPolicy(), NOW)
    assert report.deleted == 5
    collected = await garbage.collect(index.conn, tmp_path)
    assert (collected.files, collected.errors) == (3, 2)
    assert not any(p.exists() for p in newer) and all(p.exists() for p in old)
    assert await garbage.pending(index.conn) == (2, 2 * SIZE)  # the old range stays listed ...
    assert await garbage.pending(index.conn, failed=False) == (0, 0)  # ... but is no free space to come
    monkeypatch.undo()
    assert (await garbage.collect(index.conn, tmp_path)).files == 2 and not any(p.exists() for p in old)
    assert await garbage.pending(index.conn) == (0, 0)


async def test_an_unreadable_hour_directory_is_an_error_not_a_crash(index, tmp_path):
    path = await add(index, tmp_path, "cam0", NOW - 40 * DAY_US)
    await sweep(index, tmp_path, RetentionPolicy(), NOW)
    hour = path.parent
    path.unlink()
    hour.rmdir()
    hour.write_bytes(b"not a directory")  # listing it fails with NotADirectoryError
    collected = await garbage.collect(index.conn, tmp_path)
    assert collected.errors == 1 and await garbage.pending(index.conn) == (1, SIZE)
    hour.unlink()
    assert (await garbage.collect(index.conn, tmp_path)).errors == 0
    assert await garbage.pending(index.conn) == (0, 0)


async def test_the_garbage_rows_go_only_after_the_directories_are_synced(index, tmp_path, monkeypatch):
    path = await add(index, tmp_path, "cam0", NOW - 40 * DAY_US)
    await sweep(index, tmp_path, RetentionPolicy(), NOW)

    def power_cut(root, directories):
        raise PowerCut  # the unlinks done, not yet on disk

    monkeypatch.setattr(media_files, "sync_directories", power_cut)
    with pytest.raises(PowerCut):
        await garbage.collect(index.conn, tmp_path)
    assert not path.exists() and await garbage.pending(index.conn) == (1, SIZE)  # still listed
    monkeypatch.undo()
    await garbage.collect(index.conn, tmp_path)
    assert await garbage.pending(index.conn) == (0, 0)


async def test_snapshots_go_with_the_footage_they_show_unless_the_event_is_locked(index, tmp_path):
    from shared.protocol.ingest import EventRecord
    from store.index.event_labels import event_snapshot, set_event_snapshot
    from store.ingest.events import ingest_event

    for days in (40, 1):
        await add(index, tmp_path, "cam0", NOW - days * DAY_US)
    ids = []
    for days, locked in ((40, 0), (39, 1), (1, 0)):
        start = NOW - days * DAY_US + 1_000_000
        done = await ingest_event(index.conn, EventRecord("node0", "cam0", start, start + 5_000_000, "motion", 0.5))
        await set_event_snapshot(index.conn, done.event_id, start, 64, 48, b"\xff\xd8jpeg")
        await index.conn.execute("UPDATE events SET locked = ? WHERE id = ?", (locked, done.event_id))
        await index.conn.commit()
        ids.append(done.event_id)
    report = await sweep(index, tmp_path, RetentionPolicy(), NOW)
    assert report.snapshots_deleted == 1
    assert [await event_snapshot(index.conn, i) is not None for i in ids] == [False, True, True]
    assert (await sweep(index, tmp_path, RetentionPolicy(), NOW, dry_run=True)).snapshots_deleted == 0
