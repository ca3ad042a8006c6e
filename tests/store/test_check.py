"""check / repair / rebuild-index / backup / prune on real MP4 segments made by the node's code."""

import asyncio
import os
import sqlite3
import subprocess
import sys
from argparse import Namespace
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from unittest.mock import ANY

import pytest

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.clock import now_us
from shared.fanout import AccessUnit
from shared.protocol.ingest import Ack, SegmentHeader
from store.admin import commands as admin
from store.index.db import Index
from store.ingest.writer import Ingestor, segment_relpath
from store.maintenance import check as check_module
from store.maintenance import garbage
from store.maintenance.check import check_store
from store.maintenance.lockfile import StoreLock
from store.maintenance.rebuild import backup_index, rebuild_index
from store.maintenance.retention import RetentionPolicy, sweep
from store.segments.files import FileSegments

W, H, FPS = 160, 120, 10
ROW_COLUMNS = "camera, node, start_us, end_us, frames, size_bytes, sha256, codec, width_px, height_px, path"
REPO = Path(__file__).resolve().parents[2]


def make_segments(camera: str, start_us: int, seconds: int = 3) -> list[tuple[SegmentHeader, bytes]]:
    src, enc = SyntheticSource(W, H, FPS), H264Encoder(W, H, FPS, keyframe_interval_s=1.0)
    seg = Segmenter(camera, segment_seconds=1, fps=FPS)
    encoded = [u for i in range(seconds * FPS) for u in enc.encode(src.read(i), start_us + i * 100_000)]
    units = [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded + enc.flush()]
    finished = [s for u in units if (s := seg.push(u))]
    if (last := seg.flush()) is not None:
        finished.append(last)
    return [build_segment("node7", s, W, H, FPS) for s in finished]


@pytest.fixture(scope="module")
def recorded() -> list[tuple[SegmentHeader, bytes]]:
    start = (now_us() // 1_000_000 - 7200) * 1_000_000  # two hours ago: young enough for any --max-age
    return make_segments("cam0", start) + make_segments("cam1", start + 50_000)


@pytest.fixture
async def store(tmp_path, recorded):
    index = await Index.open(tmp_path / "index.sqlite3")
    ingestor = Ingestor(tmp_path, index)
    for header, data in recorded:
        assert isinstance(await ingestor.ingest(header, memoryview(data)), Ack)
    yield index
    await index.close()  # a no-op if the test closed it already


def segment_rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute(f"SELECT {ROW_COLUMNS} FROM segments ORDER BY camera, start_us").fetchall()


def relpath(header: SegmentHeader) -> str:
    return str(segment_relpath(header.camera, header.start_us))


async def test_a_fresh_store_checks_clean(store, tmp_path, recorded):
    report = await check_store(tmp_path, store, deep=True)
    assert report.ok and report.rows == len(recorded) == report.files == 6


async def test_check_finds_each_kind_of_problem_and_repair_leaves_a_clean_store(store, tmp_path, recorded):
    before = segment_rows(tmp_path)
    (missing, _), (truncated, _), (flipped, data), (orphan, _) = recorded[:4]
    (tmp_path / relpath(missing)).unlink()
    os.truncate(tmp_path / relpath(truncated), 100)
    path = tmp_path / relpath(flipped)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, other bytes
    await store.conn.execute("DELETE FROM segments WHERE start_us = ?", (orphan.start_us,))
    await store.conn.commit()
    temp = tmp_path / "segments" / "cam0" / "x.mp4.tmp-0badf00d"
    temp.write_bytes(b"half")

    shallow = await check_store(tmp_path, store)
    assert shallow.counts() == {"missing": 1, "size": 1, "sha256": 0, "orphan": 1, "temporary": 1}
    deep = await check_store(tmp_path, store, deep=True)
    assert deep.counts() == {"missing": 1, "size": 1, "sha256": 1, "orphan": 1, "temporary": 1}
    assert {p.kind: p.path for p in deep.problems}["sha256"] == relpath(flipped)

    repaired = await check_store(tmp_path, store, deep=True, repair=True)
    assert len(repaired.repaired) == 5 and not repaired.unrepaired
    again = await check_store(tmp_path, store, deep=True)
    assert again.ok, again.problems
    # The orphan is back with the very row ingest made; the two bad files are in quarantine.
    gone = {relpath(missing), relpath(truncated), relpath(flipped)}
    assert segment_rows(tmp_path) == [r for r in before if r[-1] not in gone]
    quarantined = sorted(p.relative_to(tmp_path / "quarantine").as_posix()
                         for p in (tmp_path / "quarantine").rglob("*.mp4"))
    assert quarantined == sorted(str(Path(relpath(h)).relative_to("segments")) for h in (truncated, flipped))
    assert not temp.exists()



async def test_repair_keeps_the_rows_when_most_segments_are_missing_the_segments_are_elsewhere(
        store, tmp_path, recorded, monkeypatch):
    """A repair run on the wrong --root/--segments (or an unmounted disk) sees every segment missing: it keeps the
    rows and says why, unless told --drop-missing."""
    monkeypatch.setattr(check_module, "MASS_MISSING_MIN", 3)  # the fixture has 6 rows; the real floor is 20
    before = segment_rows(tmp_path)
    (tmp_path / "segments").rename(tmp_path / "elsewhere")  # the disk "not mounted"
    kept = await check_store(tmp_path, store, repair=True)
    assert kept.counts()["missing"] == 6 and segment_rows(tmp_path) == before
    assert len(kept.unrepaired) == 1 and "6 of 6 rows" in kept.unrepaired[0] and "--drop-missing" in kept.unrepaired[0]
    (tmp_path / "elsewhere").rename(tmp_path / "segments")
    assert (await check_store(tmp_path, store, deep=True)).ok  # nothing was lost
    (tmp_path / relpath(recorded[0][0])).unlink()  # one really gone: a minority, dropped as always
    assert (await check_store(tmp_path, store, repair=True)).repaired == [f"removed the row of missing "
                                                                          f"{relpath(recorded[0][0])}"]
    for header, _ in recorded[1:]:
        (tmp_path / relpath(header)).unlink()
    dropped = await check_store(tmp_path, store, repair=True, drop_missing=True)
    assert dropped.counts()["missing"] == 5 and not dropped.unrepaired and segment_rows(tmp_path) == []


def test_most_rows_missing_means_elsewhere_from_twenty_rows_on():
    assert check_module.mostly_elsewhere(20, 39) and not check_module.mostly_elsewhere(19, 19)
    assert not check_module.mostly_elsewhere(20, 40)


async def test_an_orphan_that_is_not_a_segment_goes_to_quarantine(store, tmp_path):
    junk = tmp_path / "segments" / "cam0" / "2020-01-01" / "00" / "1577836800000000.mp4"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not an mp4")
    repaired = await check_store(tmp_path, store, repair=True)
    assert repaired.counts()["orphan"] == 1 and "not re-indexable" in repaired.repaired[0]
    assert (await check_store(tmp_path, store)).ok
    assert (tmp_path / "quarantine" / "cam0" / "2020-01-01" / "00" / junk.name).read_bytes() == b"not an mp4"


class RowCommittedMeanwhile(FileSegments):
    """A store sharing the index commits the row of an object the check listed as an orphan, after the listing
    and before the repair reads the object (a PUT comes before its row): here, as the repair opens it."""

    def __init__(self, root: Path, row: tuple) -> None:
        super().__init__(root)
        self.row: tuple | None = row

    @contextmanager
    def open_local(self, name: str) -> Iterator[Path]:
        if self.row is not None:
            with sqlite3.connect(self.root / "index.sqlite3") as other_store:
                other_store.execute(f"INSERT INTO segments ({ROW_COLUMNS}, received_us) VALUES "
                                    f"({', '.join('?' * (len(self.row) + 1))})", (*self.row, now_us()))
            self.row = None
        with super().open_local(name) as path:
            yield path


async def test_repair_leaves_an_orphan_a_running_store_indexed_meanwhile_where_it_is(store, tmp_path, recorded):
    before = segment_rows(tmp_path)
    header = recorded[0][0]
    await store.conn.execute("DELETE FROM segments WHERE start_us = ?", (header.start_us,))
    await store.conn.commit()
    segments = RowCommittedMeanwhile(tmp_path, before[0])
    repaired = await check_store(tmp_path, store, repair=True, segments=segments)
    assert repaired.counts()["orphan"] == 1 and "indexed meanwhile" in repaired.repaired[0], repaired.repaired
    assert (tmp_path / relpath(header)).exists() and not (tmp_path / "quarantine").exists()
    assert segment_rows(tmp_path) == before and (await check_store(tmp_path, store, deep=True)).ok


class CommitsAfterTheLookup:
    """The index connection a repair uses, as a store sharing it races the repair: that store commits the row of
    the orphan right after the repair looked for one (the repair's INSERT then meets UNIQUE (camera, start_us))."""

    def __init__(self, conn, root: Path, row: tuple) -> None:  # type: ignore[no-untyped-def]
        self._conn, self._root, self._row = conn, root, row

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._conn, name)

    def execute(self, sql: str, parameters=()):  # type: ignore[no-untyped-def]
        if not (sql.startswith("SELECT path FROM segments WHERE camera") and self._row is not None):
            return self._conn.execute(sql, parameters)
        row, self._row = self._row, None
        looked = self._conn.execute(sql, parameters)

        @asynccontextmanager
        async def then_commit():  # type: ignore[no-untyped-def]
            async with looked as cur:
                yield cur
            with sqlite3.connect(self._root / "index.sqlite3") as other_store:
                other_store.execute(f"INSERT INTO segments ({ROW_COLUMNS}, received_us) VALUES "
                                    f"({', '.join('?' * (len(row) + 1))})", (*row, now_us()))

        return then_commit()


async def test_repair_meeting_a_row_committed_between_its_lookup_and_its_insert_leaves_it(store, tmp_path,
                                                                                         recorded):
    before = segment_rows(tmp_path)
    header = recorded[0][0]
    await store.conn.execute("DELETE FROM segments WHERE start_us = ?", (header.start_us,))
    await store.conn.commit()
    store.conn = CommitsAfterTheLookup(store.conn, tmp_path, before[0])
    repaired = await check_store(tmp_path, store, repair=True)
    assert repaired.counts()["orphan"] == 1 and "indexed meanwhile" in repaired.repaired[0], repaired.repaired
    assert (tmp_path / relpath(header)).exists() and not (tmp_path / "quarantine").exists()
    assert segment_rows(tmp_path) == before
    store.conn = store.conn._conn
    assert (await check_store(tmp_path, store, deep=True)).ok


async def test_rebuild_deletes_what_retention_left_to_delete_instead_of_indexing_it_again(store, tmp_path,
                                                                                             recorded):
    await sweep(store, tmp_path, RetentionPolicy(max_bytes=1), now_us())  # rows to garbage, files not yet
    assert segment_rows(tmp_path) == [] and await garbage.pending(store.conn) == (len(recorded), ANY)
    await store.close()
    report = await rebuild_index(tmp_path)
    assert report.garbage_collected == len(recorded) and report.indexed == 0
    assert not list((tmp_path / "segments").rglob("*.mp4"))


async def test_rebuild_index_from_files_reproduces_the_rows_and_keeps_events_and_settings(store, tmp_path):
    await store.conn.execute("INSERT INTO events (camera, node, start_us, end_us, kind, score, locked) "
                             "VALUES ('cam0', 'node7', 1, 2, 'motion', 0.5, 1)")
    await store.conn.execute("INSERT INTO settings (camera, key, value, changed_us, changed_by) "
                             "VALUES ('cam1', 'retention_days', '7', 3, 'test')")
    await store.conn.commit()
    before = segment_rows(tmp_path)
    await store.close()
    report = await rebuild_index(tmp_path)
    assert report.indexed == 6 and not report.skipped and not report.notes
    assert report.carried == {"nodes": 1, "events": 1, "event_labels": 0, "event_snapshots": 0, "settings": 1,
                              "settings_history": 0}
    assert segment_rows(tmp_path) == before
    with sqlite3.connect(tmp_path / "index.sqlite3.bak") as bak:
        assert bak.execute(f"SELECT {ROW_COLUMNS} FROM segments ORDER BY camera, start_us").fetchall() == before
    assert not list(tmp_path.glob("index.sqlite3.rebuild*"))
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        assert conn.execute("SELECT locked FROM events").fetchall() == [(1,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    fresh = await Index.open(tmp_path / "index.sqlite3")
    try:
        assert (await check_store(tmp_path, fresh, deep=True)).ok
    finally:
        await fresh.close()


def test_rebuild_and_repair_refuse_while_a_store_holds_the_root(tmp_path, capsys):
    (tmp_path / "segments").mkdir()
    sqlite3.connect(tmp_path / "index.sqlite3").close()
    with StoreLock.acquire(tmp_path):
        assert admin.cmd_rebuild(Namespace(root=str(tmp_path), log_level="warning")) == 2
        assert "a store seems to be running" in capsys.readouterr().err
        args = Namespace(root=str(tmp_path), log_level="warning", deep=False, repair=True)
        assert admin.cmd_check(args) == 2
        refused = capsys.readouterr().err
        assert "a store seems to be running" in refused and "of its own" not in refused  # SQLite: stop it
        # A store's root on a PostgreSQL index: other stores share it, so the repair may run beside them elsewhere.
        args.index = "postgresql://sht@127.0.0.1:1/cctv"  # refused before anything connects
        assert admin.cmd_check(args) == 2
        assert "run --repair with a --root of its own" in capsys.readouterr().err
    assert not (tmp_path / "index.sqlite3.bak").exists()


async def test_backup_is_a_consistent_readable_copy_while_the_index_is_open(store, tmp_path, recorded):
    # Another connection is mid-transaction: its uncommitted delete must not be in the copy.
    await store.conn.execute("DELETE FROM segments WHERE camera = 'cam1'")
    result = await asyncio.to_thread(backup_index, tmp_path, tmp_path / "copy.sqlite3")
    await store.conn.rollback()
    assert result.segments == len(recorded)
    with sqlite3.connect(tmp_path / "copy.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0] == len(recorded)
    assert not list(tmp_path.glob("copy.sqlite3*-*"))
    with pytest.raises(ValueError):
        backup_index(tmp_path, tmp_path / "index.sqlite3")


def sht(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "sht", "store", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=60)


async def test_cli_prune_max_bytes_leaves_at_most_that_and_a_clean_store(store, tmp_path, recorded):
    await store.close()
    limit = sum(len(d) for _, d in recorded) // 2
    dry = sht("prune", "--root", str(tmp_path), "--max-bytes", str(limit), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stdout and len(segment_rows(tmp_path)) == len(recorded)
    out = sht("prune", "--root", str(tmp_path), "--max-bytes", str(limit))
    assert out.returncode == 0, out.stderr
    assert "cam0" in out.stdout and "deleted" in out.stdout
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        total = conn.execute("SELECT SUM(size_bytes) FROM segments").fetchone()[0]
    assert 0 < total <= limit
    assert sum(p.stat().st_size for p in (tmp_path / "segments").rglob("*.mp4")) == total
    check = sht("check", "--root", str(tmp_path), "--deep")
    assert check.returncode == 0 and "clean" in check.stdout, check.stdout


def test_cli_flags_are_checked(tmp_path):
    bad = sht("prune", "--root", str(tmp_path), "--max-bytes", "lots")
    assert bad.returncode == 2 and "--max-bytes" in bad.stderr
    assert sht("prune", "--root", str(tmp_path), "--min-free", "150%").returncode == 2
    missing = sht("check", "--root", str(tmp_path))
    assert missing.returncode == 2 and "no index" in missing.stderr
    args = Namespace(max_age="2w", max_bytes="1.5T", min_free="10%")
    assert admin.policy_from_args(args) == RetentionPolicy(max_age_us=14 * 86_400_000_000, max_bytes=3 * 2**39,
                                                           min_free_percent=10.0)
    assert admin.policy_from_args(Namespace(max_age="off", max_bytes=None, min_free="50G")) == RetentionPolicy(
        max_age_us=None, min_free_bytes=50 * 2**30)
