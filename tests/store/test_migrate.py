"""``sht store migrate`` (store/migrate/) against a real PostgreSQL (tests/store/postgres.py) and a real SeaweedFS
(tests/store/seaweed.py), the run's (tests/servers.py; a database and prefix per test): a store made by a real store
ingesting real segments and events (labelled, locked, with a snapshot), settings and tokens, moved by the real command,
then served from the new backends next to the old store."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from shared.protocol.ingest import EventRecord
from shared.query_client import StoreClient, StoreError
from store.admin.keys import KeyStore
from store.app import Store
from store.index.db import Index
from store.index.migrations import schema_text
from store.maintenance.lockfile import LOCK_NAME
from store.maintenance.retention import RetentionPolicy
from store.migrate import BUCKET_MARKER
from store.migrate.records import TABLES
from store.migrate.segments import BATCH
from store.migrate.target import claim_index, finish_index
from store.segments.s3 import S3Segments
from store.segments.url import S3Location, parse_segments_url
from tests.store.postgres import PostgresCluster
from tests.store.seaweed import BUCKET, Seaweed, free_ports
from tests.store.test_check import make_segments
from tests.store.test_replica_s3 import event, label_and_lock, send

REPO = Path(__file__).resolve().parents[2]
KEEP_ALL = RetentionPolicy(max_age_us=None, min_free_bytes=None)
SECONDS = 80  # of 1 s segments per camera: 160 segments, enough for a migrate to be killed in the middle
_prefixes = itertools.count()


def new_prefix(seaweed: Seaweed) -> S3Location:
    location = parse_segments_url(seaweed.url(BUCKET, prefix=f"moved{next(_prefixes)}"))
    assert isinstance(location, S3Location)
    return location


@dataclass
class Source:
    root: Path
    segments: int
    start_us: int
    end_us: int
    viewer: str  # tokens made by the old store (its ROOT/keys/)
    revoked: str
    event_id: int  # the labelled, locked event with a snapshot


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A store root made by a real store: segments of two cameras, a motion event opened then closed, labelled,
    locked and given a snapshot, a loss event, a setting changed twice; then stopped."""
    return asyncio.run(_record(tmp_path_factory.mktemp("source") / "store"))


async def _record(root: Path) -> Source:
    start = (time.time_ns() // 1000 // 1_000_000 - 3 * 3600) * 1_000_000  # across at least one hour boundary
    footage = make_segments("cam0", start, SECONDS) + make_segments("cam1", start + 50_000, SECONDS)
    store = Store(root, KEEP_ALL)
    await store.start("127.0.0.1", 0)
    keys = KeyStore(root)
    try:
        url = f"ws://127.0.0.1:{store.port}"
        await send(url, keys.issue("node", "node7", 600)[0],
                   [event("cam0", start + 5_000_000, open=True), *footage,
                    event("cam0", start + 5_000_000, end_us=start + 9_000_000, score=0.9),
                    event("cam1", start + 20_000_000),
                    EventRecord("node7", "cam1", start + 30_000_000, start + 31_000_000, "loss",
                                detail="spool full")])
        await label_and_lock(store, "cam0", start + 5_000_000)
        admin = keys.issue("admin", "tester", 600)[0]
        async with StoreClient(f"http://127.0.0.1:{store.port}", token=admin) as client:
            await client.call("set_setting", camera="cam0", key="retention_days", value=60, by="tester")
            await client.call("set_setting", camera="cam1", key="motion_sensitivity", value=0.8, by="tester")
            await client.call("set_setting", camera="cam0", key="retention_days", value=90, by="tester")
        async with store.index.conn.execute("SELECT id FROM events WHERE locked = 1") as cur:  # type: ignore[union-attr]
            event_id = int((await cur.fetchone())[0])
    finally:
        await store.stop()
    viewer = keys.issue("viewer", "watcher", 3600)[0]
    revoked = keys.issue("viewer", "gone", 3600)[0]
    keys.revoke(revoked)
    end = max(h.end_us for h, _ in footage)
    return Source(root, len(footage), start, end, viewer, revoked, event_id)


def snapshot_of(root: Path) -> dict[str, bytes]:
    """Every file under the root with its bytes (the lock file aside: migrate holds it while it runs)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def sht(seaweed: Seaweed, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"} | seaweed.env(*(secret,) if secret else ())
    return subprocess.run([sys.executable, "-m", "sht", "store", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, env=env)


def migrate_args(source: Source, index: str | None, segments: S3Location | None, *more: str) -> list[str]:
    return ["migrate", "--root", str(source.root), *(("--to-index", index) if index else ()),
            *(("--to-segments", segments.url()) if segments else ()), *more]


def sqlite_counts(root: Path) -> dict[str, int]:
    with sqlite3.connect(f"{(root / 'index.sqlite3').as_uri()}?mode=ro", uri=True) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES if t != "schema_version"}


def pg_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def pg_counts(url: str) -> dict[str, int]:
    return {t: pg_rows(url, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES if t != "schema_version"}


async def objects(seaweed: Seaweed, location: S3Location) -> dict[str, dict]:
    """Every object below the prefix (the marker aside): its size and the SHA-256 the server verified."""
    found = {}
    async with seaweed.client() as s3:
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=location.prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(location.prefix):]
                if name == BUCKET_MARKER:
                    continue
                head = await s3.head_object(Bucket=BUCKET, Key=obj["Key"], ChecksumMode="ENABLED")
                found[name] = {"size": obj["Size"], "sha256": base64.b64decode(head["ChecksumSHA256"]).hex()}
    return found


def segment_rows(source: Source) -> dict[str, tuple[int, str]]:
    with sqlite3.connect(f"{(source.root / 'index.sqlite3').as_uri()}?mode=ro", uri=True) as conn:
        return {p.removeprefix("segments/"): (s, h) for p, s, h in
                conn.execute("SELECT path, size_bytes, sha256 FROM segments")}


@dataclass
class Migrated:
    index: str
    location: S3Location
    done: subprocess.CompletedProcess[str]
    before: dict[str, bytes]


@pytest.fixture(scope="module")
def migrated(source: Source, seaweed: Seaweed, postgres: PostgresCluster) -> Migrated:
    index, location = postgres.create_database(), new_prefix(seaweed)
    before = snapshot_of(source.root)
    done = sht(seaweed, *migrate_args(source, index, location))
    return Migrated(index, location, done, before)


# --- the whole store to PostgreSQL and S3 --------------------------------------------------------------------------

def test_every_table_of_the_schema_has_a_plan():
    made = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema_text()))
    assert made == set(TABLES), made ^ set(TABLES)


async def test_migrate_copies_every_row_and_object_verified_and_leaves_the_source_as_it_was(migrated, source,
                                                                                            s3_env):
    out = migrated.done.stdout
    assert migrated.done.returncode == 0, out + migrated.done.stderr
    assert f"segments: {source.segments:,} of {source.segments:,} segments (100.0%)" in out, out
    assert f"{source.segments:,} objects PUT" in out and "the copy is complete and verified" in out, out
    assert f"verified: {source.segments:,} objects hold the SHA-256 of their row" in out, out
    assert "--index postgresql://" in out and f"--segments {migrated.location.url()}" in out.replace("'", ""), out
    assert snapshot_of(source.root) == migrated.before  # nothing in the source changed, nothing added
    wanted = sqlite_counts(source.root) | {"signing_keys": 1, "issued_tokens": 4, "revoked_tokens": 1}
    assert pg_counts(migrated.index) == wanted | {"garbage": 0}
    assert wanted["events"] == 3 and wanted["event_labels"] == 2 and wanted["event_snapshots"] == 1
    assert wanted["settings"] == 2 and wanted["settings_history"] == 3 and wanted["coverage_hours"] >= 2
    # The same ids, hence the same event ids for the API; new rows go after them.
    with sqlite3.connect(source.root / "index.sqlite3") as conn:
        ids = conn.execute("SELECT id, camera, start_us, sha256 FROM segments ORDER BY id").fetchall()
    assert pg_rows(migrated.index, "SELECT id, camera, start_us, sha256 FROM segments ORDER BY id") == ids
    assert pg_rows(migrated.index, "SELECT nextval(pg_get_serial_sequence('segments', 'id'))")[0][0] == ids[-1][0] + 1
    # Each object under its row's name, holding the SHA-256 the server verified, and nothing else.
    rows = segment_rows(source)
    held = await objects(s3_env, migrated.location)
    assert held == {name: {"size": size, "sha256": sha} for name, (size, sha) in rows.items()}
    checked = await asyncio.to_thread(sht, s3_env, "check", "--root", str(source.root), "--index", migrated.index,
                                      "--segments", migrated.location.url(), "--deep")
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr


async def answers(port: int, token: str, source: Source) -> dict:
    """What a viewer asks a store: segments, events (by label too), timelines, a thumbnail, the snapshot, settings."""
    span = {"from_us": source.start_us - 60_000_000, "to_us": source.end_us + 60_000_000}
    got: dict = {}
    async with StoreClient(f"http://127.0.0.1:{port}", token=token) as client:
        got["segments"] = await client.call("segments", **span, limit=5000)
        got["events"] = await client.call("events", **span)
        got["people"] = await client.call("events", **span, labels=["person"])
        for camera in ("cam0", "cam1"):
            got[f"timeline {camera}"] = await client.call("timeline", camera=camera, bucket="minute", **span)
            got[f"hours {camera}"] = await client.call("timeline", camera=camera, bucket="hour", **span)
        chunks: list[bytes] = []
        result = await client.call("thumbnail", camera="cam1", at_us=source.start_us + 7_300_000, width=64,
                                   on_chunk=chunks.append)
        got["thumbnail"] = (result, b"".join(chunks))
        got["snapshot"] = await client.snapshot(source.event_id)
        got["settings"] = (await client.call("settings"))["settings"]
        got["history"] = await client.call("settings_history", limit=100)
    return got


async def test_a_store_on_the_new_backends_answers_as_the_old_one(migrated, source, postgres, s3_env, tmp_path):
    assert migrated.done.returncode == 0
    old_root = tmp_path / "old"
    shutil.copytree(source.root, old_root)  # the old store changes its root as it runs: not the module's source
    old = Store(old_root, KEEP_ALL)
    new = Store(tmp_path / "new", KEEP_ALL, index=migrated.index,
                segments=S3Segments(migrated.location, tmp_path / "new" / "cache" / "segments"))
    await old.start("127.0.0.1", 0)
    try:
        await new.start("127.0.0.1", 0)
        try:
            assert old.port is not None and new.port is not None
            before, after = await answers(old.port, source.viewer, source), await answers(new.port, source.viewer,
                                                                                          source)
            assert len(before["segments"]["items"]) == source.segments and before["people"]["items"]
            assert before["snapshot"][1] and before["thumbnail"][1]
            for what in before:
                assert after[what] == before[what], what
            # The old store's tokens: made with the key that came along; the revoked one stays refused.
            with pytest.raises(StoreError):
                async with StoreClient(f"http://127.0.0.1:{new.port}", token=source.revoked) as client:
                    await client.call("fleet")
        finally:
            await new.stop()
    finally:
        await old.stop()


async def test_a_finished_migration_run_again_does_nothing(migrated, source, s3_env):
    assert migrated.done.returncode == 0
    again = await asyncio.to_thread(sht, s3_env, *migrate_args(source, migrated.index, migrated.location))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert "start the store on the new backends: sht store" in again.stdout


# --- killed and run again -----------------------------------------------------------------------------------------

async def test_a_migrate_killed_midway_finishes_when_run_again_without_duplicates(source, postgres, s3_env,
                                                                                  tmp_path):
    """SIGKILLed with some rows and objects in; meanwhile the old store runs again (its check --repair drops a
    segment already copied, it records more): the second run ends with the target equal to the source."""
    root = tmp_path / "store"
    shutil.copytree(source.root, root)
    moving = dataclasses.replace(source, root=root)
    index, location = postgres.create_database(), new_prefix(s3_env)
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"} | s3_env.env()

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "sht", "store",
                                 *migrate_args(moving, index, location, "--parallel", "1")],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    process = launch()
    try:
        rows = 0
        deadline = time.monotonic() + 60
        while rows == 0:  # the first batch of rows is in: its objects were verified, the next batch is on its way
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no row copied within 60 s"
            await asyncio.sleep(0.01)
            try:
                rows = (await asyncio.to_thread(pg_rows, index, "SELECT COUNT(*) FROM segments"))[0][0]
            except psycopg.errors.UndefinedTable:
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    rows = pg_rows(index, "SELECT COUNT(*) FROM segments")[0][0]
    assert 0 < rows < source.segments, rows  # killed in the middle
    assert pg_rows(index, "SELECT finished_us FROM store_migration") == [(None,)]

    first = pg_rows(index, "SELECT path FROM segments ORDER BY id LIMIT 1")[0][0]
    (root / first).unlink()
    repaired = await asyncio.to_thread(sht, s3_env, "check", "--root", str(root), "--repair")
    assert "removed the row of missing" in repaired.stdout, repaired.stdout + repaired.stderr
    store = Store(root, KEEP_ALL)
    await store.start("127.0.0.1", 0)
    try:
        more = make_segments("cam2", source.start_us, 10)
        await send(f"ws://127.0.0.1:{store.port}", KeyStore(root).issue("node", "node7", 600)[0],
                   [*more, event("cam2", source.start_us + 1_000_000)])
    finally:
        await store.stop()
    total = source.segments - 1 + len(more)

    again = await asyncio.to_thread(sht, s3_env, *migrate_args(moving, index, location))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "taken up where an earlier one stopped" in again.stdout, again.stdout
    assert "1 the source no longer has removed" in again.stdout, again.stdout
    assert f"{total - (rows - 1):,} objects PUT" in again.stdout, again.stdout  # the rest, each once
    assert pg_counts(index) == sqlite_counts(root) | {"signing_keys": 1, "issued_tokens": len(KeyStore(root).issued()),
                                                      "revoked_tokens": 1, "garbage": 0}
    assert pg_rows(index, "SELECT COUNT(*) FROM segments")[0][0] == total
    rows_by_name = segment_rows(moving)
    assert await objects(s3_env, location) == {n: {"size": s, "sha256": h} for n, (s, h) in rows_by_name.items()}
    checked = await asyncio.to_thread(sht, s3_env, "check", "--root", str(root), "--index", index,
                                      "--segments", location.url())
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr


async def test_stop_after_copies_in_windows_each_run_going_on_from_the_last(source, postgres, s3_env):
    """--stop-after: a long migration in windows shorter than the nodes' spools, the store recording in between."""
    index, location = postgres.create_database(), new_prefix(s3_env)
    for window in (1, 2):
        done = await asyncio.to_thread(sht, s3_env, *migrate_args(source, index, location, "--stop-after", "0s"))
        assert done.returncode == 3, done.stdout + done.stderr
        assert "run the same command again; it goes on from there" in done.stderr, done.stderr
        assert pg_rows(index, "SELECT COUNT(*) FROM segments")[0][0] == window * BATCH  # one batch a window here
    done = await asyncio.to_thread(sht, s3_env, *migrate_args(source, index, location))
    assert done.returncode == 0 and "the copy is complete and verified" in done.stdout, done.stdout + done.stderr
    assert f"{source.segments - 2 * BATCH:,} objects PUT" in done.stdout, done.stdout


async def test_a_damaged_segment_is_not_copied_nor_indexed_and_the_copy_is_not_called_complete(source, postgres,
                                                                                              s3_env, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(source.root, root)
    damaged = sorted(segment_rows(source))[5]
    data = bytearray((root / "segments" / damaged).read_bytes())
    data[-1] ^= 0xFF  # the same size, other bytes: only the SHA-256 tells
    (root / "segments" / damaged).write_bytes(bytes(data))
    index, location = postgres.create_database(), new_prefix(s3_env)
    args = ["migrate", "--root", str(root), "--to-index", index, "--to-segments", location.url()]
    done = await asyncio.to_thread(sht, s3_env, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"not copied: segments/{damaged}: its bytes do not match its row" in done.stdout, done.stdout
    assert "the copy is NOT complete" in done.stderr and "--deep" in done.stderr, done.stderr
    assert pg_rows(index, f"SELECT COUNT(*) FROM segments WHERE path = 'segments/{damaged}'") == [(0,)]
    assert damaged not in await objects(s3_env, location)
    assert pg_rows(index, "SELECT finished_us FROM store_migration") == [(None,)]
    # What it says to do: check --deep --repair (quarantines the file, drops its row), then migrate again.
    repaired = await asyncio.to_thread(sht, s3_env, "check", "--root", str(root), "--deep", "--repair")
    assert "moved" in repaired.stdout, repaired.stdout + repaired.stderr
    again = await asyncio.to_thread(sht, s3_env, *args)
    assert again.returncode == 0 and "the copy is complete and verified" in again.stdout, again.stdout + again.stderr
    assert "0 objects PUT" in again.stdout and pg_rows(index, "SELECT COUNT(*) FROM segments") == \
        [(source.segments - 1,)]


async def test_a_store_killed_with_its_last_commits_in_the_wal_is_read_through_it(source, postgres, s3_env,
                                                                                  tmp_path):
    root = tmp_path / "store"
    shutil.copytree(source.root, root)
    with sqlite3.connect(root / "index.sqlite3") as writer:  # open while migrate runs: its WAL is not folded in
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("INSERT INTO settings_history (camera, key, old_value, new_value, changed_us, changed_by) "
                       "VALUES ('cam1', 'recording_mode', '\"continuous\"', '\"motion\"', 1, 'last words')")
        writer.commit()
        assert (root / "index.sqlite3-wal").stat().st_size > 0
        index = postgres.create_database()
        done = await asyncio.to_thread(sht, s3_env, "migrate", "--root", str(root), "--to-index", index)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pg_rows(index, "SELECT changed_by FROM settings_history ORDER BY id DESC LIMIT 1") == [("last words",)]


# --- each alone ---------------------------------------------------------------------------------------------------

async def test_the_index_alone_to_postgresql(source, postgres, s3_env):
    index = postgres.create_database()
    done = await asyncio.to_thread(sht, s3_env, *migrate_args(source, index, None))
    assert done.returncode == 0 and "the copy is complete and verified" in done.stdout, done.stdout + done.stderr
    assert f"sht store --root {source.root} --index postgresql://" in done.stdout and "--segments" not in done.stdout
    assert pg_counts(index) == sqlite_counts(source.root) | {"signing_keys": 1, "issued_tokens": 4,
                                                             "revoked_tokens": 1}
    checked = await asyncio.to_thread(sht, s3_env, "check", "--root", str(source.root), "--index", index)
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr


async def test_the_segments_alone_to_s3(source, s3_env, tmp_path):
    location = new_prefix(s3_env)
    done = await asyncio.to_thread(sht, s3_env, *migrate_args(source, None, location))
    assert done.returncode == 0 and "the copy is complete and verified" in done.stdout, done.stdout + done.stderr
    assert f"{source.segments:,} objects PUT" in done.stdout
    rows = segment_rows(source)
    assert await objects(s3_env, location) == {n: {"size": s, "sha256": h} for n, (s, h) in rows.items()}
    kept = tmp_path / "kept"  # the store goes on with its own index: check a copy (opening it may upgrade it)
    shutil.copytree(source.root, kept, ignore=shutil.ignore_patterns("segments"))
    checked = await asyncio.to_thread(sht, s3_env, "check", "--root", str(kept), "--segments", location.url())
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr
    again = await asyncio.to_thread(sht, s3_env, *migrate_args(source, None, location))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


# --- refusals -----------------------------------------------------------------------------------------------------

def refused(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_refused_while_a_store_runs_on_the_root(source, postgres, s3_env, tmp_path):
    root = tmp_path / "busy"
    shutil.copytree(source.root, root)
    store = Store(root, KEEP_ALL)
    await store.start("127.0.0.1", 0)
    try:
        index = postgres.create_database()
        done = await asyncio.to_thread(sht, s3_env, "migrate", "--root", str(root), "--to-index", index)
        refused(done, "a store seems to be running there: stop it first")
        assert pg_rows(index, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'") == \
            [(0,)]
    finally:
        await store.stop()


async def test_refused_onto_a_target_that_holds_other_data(source, postgres, s3_env, tmp_path):
    # An index another store has used (its signing key, a segment), and a database of something else.
    used = postgres.create_database()
    other = Store(tmp_path / "other", KEEP_ALL, index=used)
    await other.start("127.0.0.1", 0)
    await other.stop()
    done = await asyncio.to_thread(sht, s3_env, *migrate_args(source, used, None))
    refused(done, "is not empty (it holds 1 signing_keys)")
    assert pg_rows(used, "SELECT to_regclass('store_migration') IS NULL") == [(True,)]
    foreign = postgres.create_database()
    with psycopg.connect(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INT)")
    refused(await asyncio.to_thread(sht, s3_env, *migrate_args(source, foreign, None)),
            "holds tables that are not a store's (invoices)")
    assert pg_rows(foreign, "SELECT to_regclass('segments') IS NULL") == [(True,)]
    # A bucket prefix that holds something, and one another store's migration holds.
    location = new_prefix(s3_env)
    async with s3_env.client() as s3:
        await s3.put_object(Bucket=BUCKET, Key=f"{location.prefix}cam9/notes.txt", Body=b"x")
    refused(await asyncio.to_thread(sht, s3_env, *migrate_args(source, None, location)), "already holds objects")
    taken = new_prefix(s3_env)
    marker = {"format": 1, "source": "nas2:/srv/sht", "index": "unchanged", "started_us": 1, "finished_us": None}
    async with s3_env.client() as s3:
        await s3.put_object(Bucket=BUCKET, Key=f"{taken.prefix}{BUCKET_MARKER}", Body=json.dumps(marker).encode())
    refused(await asyncio.to_thread(sht, s3_env, *migrate_args(source, None, taken)),
            "holds a migration of nas2:/srv/sht, not of this store")


async def test_refused_in_one_line_what_cannot_be_reached(source, postgres, s3_env, tmp_path):
    nobody = f"postgresql://postgres@127.0.0.1:{free_ports(1)[0]}/nothing"
    refused(await asyncio.to_thread(sht, s3_env, *migrate_args(source, nobody, None)), "cannot reach the index at")
    location = new_prefix(s3_env)
    refused(await asyncio.to_thread(sht, s3_env, *migrate_args(source, None, location), secret="wrong"),
            "refused the credentials")
    dead = S3Location(BUCKET, "", f"http://127.0.0.1:{free_ports(1)[0]}")
    refused(await asyncio.to_thread(sht, s3_env, *migrate_args(source, None, dead)), "does not answer")
    missing = tmp_path / "no-such-store"
    refused(await asyncio.to_thread(sht, s3_env, "migrate", "--root", str(missing), "--to-segments", location.url()),
            "there is no store at")
    assert not missing.exists()
    refused(await asyncio.to_thread(sht, s3_env, "migrate", "--root", str(source.root)), "say where to")
    assert await objects(s3_env, location) == {}


async def test_a_store_refuses_an_index_an_unfinished_migration_is_filling(postgres, tmp_path):
    """Killed, stopped by --stop-after or not complete, a migration is taken up by its next run, which deletes the
    target's rows the source does not have, with their objects: a store that wrote there meanwhile would lose what
    it recorded. So a store does not start on such an index; once migrate finished, it does."""
    url = postgres.create_database()
    index = await Index.open(url)
    try:
        await claim_index(index.conn, url, "nas1:/srv/sht", "")
    finally:
        await index.close()
    store = Store(tmp_path / "new", KEEP_ALL, index=url)
    with pytest.raises(OSError, match=r"unfinished `sht store migrate` of nas1:/srv/sht.*run the same migrate again"):
        await store.start("127.0.0.1", 0)
    assert pg_rows(url, "SELECT COUNT(*) FROM nodes") == [(0,)]
    index = await Index.open(url)
    try:
        await finish_index(index.conn, "nas1:/srv/sht")
    finally:
        await index.close()
    store = Store(tmp_path / "new", KEEP_ALL, index=url)
    await store.start("127.0.0.1", 0)
    await store.stop()
