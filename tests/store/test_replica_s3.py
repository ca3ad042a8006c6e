"""The off-site copy (``sht store --replica``, store/replica/) and ``sht store restore`` against a real SeaweedFS
(tests/store/seaweed.py): one server for the module, the copy in a bucket of its own (a prefix per test), the
other bucket for a store restored onto S3. The stores here keep their segments in files."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from shared.clock import now_us
from shared.protocol.ingest import Ack, EventRecord, SegmentHeader, encode_segment, parse_reply
from shared.security import bearer
from store.admin.keys import KeyStore
from store.app import Store
from store.index.db import transaction
from store.index.event_labels import EventLabelling, set_event_labelling, set_event_snapshot
from store.index.shapes import SHAPE_SELECT
from store.maintenance.retention import RetentionPolicy
from store.replica import ReplicaOptions
from store.replica.bucket import ReplicaBucket
from store.replica.records import row_from_metadata
from store.segments import segment_name
from store.segments.url import S3Location, parse_segments_url
from tests.store.seaweed import BUCKET, Seaweed, free_ports, running_seaweed
from tests.store.test_check import make_segments

REPO = Path(__file__).resolve().parents[2]
REPLICA = "sht-replica"
FAST = ReplicaOptions(poll_s=0.1, full_scan_s=0.5, backoff_max_s=0.5)
KEEP_ALL = RetentionPolicy(max_age_us=None, min_free_bytes=None)
JPEG = b"\xff\xd8\xff\xe0 not really a picture \xff\xd9"
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        server.create_bucket(REPLICA)
        yield server


@pytest.fixture
def s3_env(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Seaweed:
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if seaweed.process is None:  # a test that killed it failed before starting it again
        seaweed.start()
    return seaweed


def new_location(seaweed: Seaweed) -> S3Location:
    location = parse_segments_url(seaweed.url(REPLICA, prefix=f"copy{next(_prefixes)}"))
    assert isinstance(location, S3Location)
    return location


def footage(camera: str, seconds: int = 3) -> list[tuple[SegmentHeader, bytes]]:
    start = (now_us() // 1_000_000 - 7200) * 1_000_000 + 137_000 * int(camera[-1])
    return make_segments(camera, start, seconds)


@pytest.fixture(scope="module")
def recorded() -> list[tuple[SegmentHeader, bytes]]:
    return footage("cam0") + footage("cam1")


async def send(url: str, token: str, items: Sequence[tuple[SegmentHeader, bytes] | EventRecord]) -> list[float]:
    """Send segments and events over /ingest; each must be acked. Returns each ack's wait (s)."""
    waits = []
    async with connect(f"{url}/ingest", additional_headers=bearer(token), max_size=2**22) as ws:
        for item in items:
            sent = time.monotonic()
            if isinstance(item, EventRecord):
                await ws.send(item.serialize())
                assert isinstance(parse_reply(await ws.recv()), Ack)
            else:
                header, data = item
                await ws.send(encode_segment(header, data))
                assert parse_reply(await ws.recv()) == Ack(header.segment_id)
            waits.append(time.monotonic() - sent)
    return waits


@dataclass
class Running:
    store: Store
    node_token: str

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.store.port}"

    async def ingest(self, items: Sequence[tuple[SegmentHeader, bytes] | EventRecord]) -> list[float]:
        return await send(self.url, self.node_token, items)

    def replica(self) -> dict:
        assert self.store.replica is not None
        return self.store.replica.health()


async def start_store(root: Path, location: S3Location, options: ReplicaOptions = FAST,
                      index: str | None = None) -> Running:
    store = Store(root, KEEP_ALL, replica=location, replica_options=options, index=index)
    await store.start("127.0.0.1", 0)
    assert store.server is not None and store.server.keys is not None
    return Running(store, store.server.keys.issue("node", "node7", 600)[0])  # files, or the index's key


def http_get(port: int, path: str) -> bytes:
    """Blocking: a worker thread's (the store under test serves on the test's event loop)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return reply.read()


async def eventually(check: Callable[[], object], timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or check}")
        await asyncio.sleep(0.05)


def caught_up(running: Running) -> Callable[[], bool]:
    """Caught up with everything done before this call: figures read since then (every event compared with the
    copy, not only new, open and recent ones) say nothing is left."""
    since = time.monotonic()

    def check() -> bool:
        assert running.store.replica is not None
        health = running.replica()
        return running.store.replica.full_scan_at > since and health["state"] == "caught-up" and \
            health["seconds_behind"] == 0
    return check


async def objects(seaweed: Seaweed, location: S3Location, below: str = "") -> dict[str, bytes]:
    bucket = ReplicaBucket(location, Path("/nonexistent"))
    await bucket.start()
    try:
        return {key: (await bucket.get_object(key))[0] async for key, _ in bucket.keys_below(below)}
    finally:
        await bucket.close()


async def check_segments_copied(seaweed: Seaweed, location: S3Location,
                                segments: list[tuple[SegmentHeader, bytes]]) -> None:
    """Each segment is in the copy under its row's path, with its bytes, its verified SHA-256 and its row."""
    async with seaweed.client() as s3:
        for header, data in segments:
            key = f"{location.prefix}segments/{segment_name(header.camera, header.start_us)}"
            head = await s3.head_object(Bucket=REPLICA, Key=key, ChecksumMode="ENABLED")
            assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode(), key
            body = await (await s3.get_object(Bucket=REPLICA, Key=key))["Body"].read()
            assert body == data, key
            row = row_from_metadata(head["Metadata"], segment_name(header.camera, header.start_us), len(data))
            assert (row["node"], row["end_us"], row["frames"], row["sha256"]) == \
                (header.node, header.end_us, header.frames, header.sha256)


def event(camera: str, start_us: int, **changes: object) -> EventRecord:
    base = EventRecord("node7", camera, start_us, start_us + 2_000_000, "motion", 0.6, (0.1, 0.2, 0.3, 0.4),
                       start_us + 1_000_000)
    return EventRecord(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})  # type: ignore[arg-type]


async def label_and_lock(store: Store, camera: str, start_us: int) -> None:
    """What the store's detection and a viewer do to an event: a label, a snapshot, a lock."""
    conn = store.index.conn  # type: ignore[union-attr]
    async with conn.execute("SELECT id FROM events WHERE camera = ? AND start_us = ?", (camera, start_us)) as cur:
        found = await cur.fetchone()
    assert found is not None
    event_id = int(found[0])
    await set_event_labelling(conn, event_id, EventLabelling("person", 0.8, (0.2, 0.2, 0.1, 0.3),
                                                             {"person": 2, "car": 1}))
    await set_event_snapshot(conn, event_id, start_us + 500_000, 320, 240, JPEG)
    async with transaction(conn):
        await conn.execute("UPDATE events SET locked = 1 WHERE id = ?", (event_id,))


@dataclass
class Replicated:
    root: Path
    location: S3Location
    segments: list[tuple[SegmentHeader, bytes]]


@pytest.fixture(scope="module")
def replicated(seaweed: Seaweed, recorded, tmp_path_factory: pytest.TempPathFactory) -> Replicated:
    """A store that recorded segments and events with --replica, caught up and stopped."""
    return asyncio.run(_replicate(seaweed, recorded, tmp_path_factory.mktemp("replicated") / "store"))


async def _replicate(seaweed: Seaweed, recorded, root: Path) -> Replicated:
    os.environ.update(seaweed.env())
    location = new_location(seaweed)
    running = await start_store(root, location)
    try:
        start = recorded[0][0].start_us
        await running.ingest([event("cam0", start, open=True), *recorded[:3],
                              event("cam0", start, end_us=start + 2_500_000, score=0.9),
                              EventRecord("node7", "cam1", start, start + 10, "loss", detail="spool full"),
                              *recorded[3:]])
        await eventually(caught_up(running), what="the first copy")
        await label_and_lock(running.store, "cam0", start)
        await eventually(caught_up(running), what="the changed event copied again")
    finally:
        await running.store.stop()
    return Replicated(root, location, recorded)


# --- copying --------------------------------------------------------------------------------------------

async def test_segments_and_events_reach_the_copy_with_their_bytes_and_the_lag_goes_to_zero(replicated, s3_env):
    await check_segments_copied(s3_env, replicated.location, replicated.segments)
    found = await objects(s3_env, replicated.location, "events/")
    start = replicated.segments[0][0].start_us
    day = segment_name("cam0", start).split("/")[1]
    motion = json.loads(found[f"events/cam0/{day}/{start}-motion.json"])
    assert motion["event"]["open"] == 0 and motion["event"]["end_us"] == start + 2_500_000  # closed, merged
    assert motion["event"]["label"] == "person" and json.loads(motion["event"]["labels"]) == {"person": 2, "car": 1}
    assert motion["event"]["locked"] == 1
    shot = motion["snapshot"]
    assert found[shot["key"]] == JPEG and shot["sha256"] == hashlib.sha256(JPEG).hexdigest()
    loss = json.loads(found[f"events/cam1/{day}/{start}-loss.json"])
    assert loss["event"]["detail"] == "spool full" and loss["snapshot"] is None
    assert json.loads((await objects(s3_env, replicated.location, "replica.json"))["replica.json"])["format"] == 1


async def test_health_and_metrics_say_how_far_behind_the_copy_is(tmp_path, s3_env, recorded):
    running = await start_store(tmp_path / "store", new_location(s3_env))
    port = running.store.port
    assert port is not None
    try:
        await running.ingest(recorded[:2])
        await eventually(caught_up(running))
        replica = json.loads(await asyncio.to_thread(http_get, port, "/health"))["replica"]
        assert replica["state"] == "caught-up" and replica["objects_pending"] == 0 == replica["bytes_behind"]
        assert replica["copied"]["segments"] == 2 and replica["last_error"] is None
        assert replica["url"] == running.store.replica.location.url()  # type: ignore[union-attr]
        metrics = (await asyncio.to_thread(http_get, port, "/metrics")).decode()
        for line in ("sht_replica_seconds_behind 0.0", "sht_replica_bytes_behind 0.0", "sht_replica_up 1.0",
                     'sht_replica_copied_objects_total{kind="segment"} 2.0'):
            assert line in metrics.splitlines(), line
    finally:
        await running.store.stop()


async def test_the_replica_down_never_stops_ingest_and_everything_is_copied_once_it_is_back(tmp_path, s3_env):
    location = new_location(s3_env)
    first, later = footage("cam2"), footage("cam3") + footage("cam4")
    running = await start_store(tmp_path / "store", location)
    try:
        await running.ingest(first)
        await eventually(caught_up(running))
        await asyncio.to_thread(s3_env.kill)
        waits = await running.ingest(later)
        assert max(waits) < 2.0, waits  # acked as fast as ever: ingest never waits for the copy
        behind = sum(len(d) for _, d in later)
        await eventually(lambda: running.replica()["state"] == "failing" and
                         running.replica()["segments_pending"] == len(later), what="the lag seen")
        seen = running.replica()
        assert seen["bytes_behind"] == behind and seen["objects_pending"] == len(later)
        assert s3_env.endpoint in seen["last_error"] and "does not answer" in seen["last_error"]
        await asyncio.sleep(1.0)
        assert running.replica()["seconds_behind"] > seen["seconds_behind"] > 0  # growing
        await asyncio.to_thread(s3_env.start)
        await eventually(caught_up(running), timeout_s=30, what="caught up after the replica came back")
    finally:
        await running.store.stop()
    await check_segments_copied(s3_env, location, first + later)


async def test_a_store_on_a_postgresql_index_copies_too(tmp_path, s3_env, postgres, recorded):
    """The replica reads the index through the same queries on both backends (the cluster's lease holder)."""
    location = new_location(s3_env)
    running = await start_store(tmp_path / "store", location, index=postgres.create_database())
    start = recorded[0][0].start_us
    try:
        await running.ingest([*recorded[:3], event("cam0", start)])
        await label_and_lock(running.store, "cam0", start)
        await eventually(caught_up(running))
        assert running.replica()["copied"]["segments"] == 3
    finally:
        await running.store.stop()
    await check_segments_copied(s3_env, location, recorded[:3])
    found = await objects(s3_env, location, "events/")
    motion = next(json.loads(v) for k, v in found.items() if k.endswith("-motion.json"))
    assert motion["event"]["labels"] == json.dumps({"car": 1, "person": 2}) and motion["event"]["locked"] == 1
    assert found[motion["snapshot"]["key"]] == JPEG


async def test_a_store_starts_and_ingests_with_its_replica_unreachable(tmp_path, s3_env, recorded):
    nobody = S3Location(REPLICA, "", f"http://127.0.0.1:{free_ports(1)[0]}")
    running = await start_store(tmp_path / "store", nobody)
    try:
        await running.ingest(recorded[:2])
        await eventually(lambda: running.replica()["state"] == "failing" and
                         running.replica()["segments_pending"] == 2, what="failing, two behind")
        assert f"{nobody.endpoint} does not answer" in running.replica()["last_error"]
        assert "--replica" in running.replica()["last_error"]  # what to fix
    finally:
        await running.store.stop()


class StallingBucket(ReplicaBucket):
    """A replica that takes ``allowed`` segment PUTs and then hangs (a link that went dead mid-copy)."""

    allowed = 0
    puts: list[str] = []

    async def put_object(self, key: str, data: bytes, sha256_hex: str, content_type: str,
                         metadata: dict[str, str] | None = None) -> None:
        if key.startswith("segments/"):
            if StallingBucket.allowed <= 0:
                await asyncio.Event().wait()
            StallingBucket.allowed -= 1
            StallingBucket.puts.append(key)
        await super().put_object(key, data, sha256_hex, content_type, metadata)


async def test_a_store_stopped_mid_copy_goes_on_where_it_stopped(tmp_path, s3_env, monkeypatch):
    location, root = new_location(s3_env), tmp_path / "store"
    made = footage("cam5", seconds=8)
    monkeypatch.setattr("store.replica.task.ReplicaBucket", StallingBucket)
    StallingBucket.allowed, StallingBucket.puts = 3, []
    running = await start_store(root, location, ReplicaOptions(poll_s=0.1, full_scan_s=0.5, parallel=1))
    try:
        await running.ingest(made)
        await eventually(lambda: len(StallingBucket.puts) == 3 and running.replica()["segments_pending"] ==
                         len(made) - 3, what="three copied, then stalled")
    finally:
        await running.store.stop()  # the fourth PUT never finished
    with sqlite3.connect(root / "replica" / "state.sqlite3") as state:
        upto = int(state.execute("SELECT value FROM meta WHERE key = 'upto'").fetchone()[0])
    assert upto == 3
    StallingBucket.allowed, StallingBucket.puts = 10**6, []
    running = await start_store(root, location)
    try:
        await eventually(caught_up(running))
    finally:
        await running.store.stop()
    # The rest, each once: nothing skipped, nothing copied twice.
    assert sorted(StallingBucket.puts) == sorted(f"segments/{segment_name(h.camera, h.start_us)}"
                                                 for h, _ in made[3:])
    await check_segments_copied(s3_env, location, made)


def sht(seaweed: Seaweed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"} | seaweed.env()
    return subprocess.run([sys.executable, "-m", "sht", "store", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env=env)


async def test_sht_store_with_replica_killed_mid_copy_resumes_without_gaps(tmp_path, s3_env):
    """The real command, SIGKILLed while it copies (or just after): started again, it copies every segment."""
    location, root, port = new_location(s3_env), tmp_path / "store", free_ports(1)[0]
    made = footage("cam6", seconds=10)
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"} | s3_env.env()

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "sht", "store", "--root", str(root), "--port", str(port),
                                 "--host", "127.0.0.1", "--detect", "off", "--max-age", "off", "--min-free", "off",
                                 "--replica", location.url(), "--log-level", "warning"], cwd=REPO, env=env,
                                stderr=subprocess.PIPE)

    async def up(process: subprocess.Popen[bytes]) -> None:
        for _ in range(300):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                await asyncio.to_thread(http_get, port, "/health")
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise AssertionError("sht store did not start")

    def health() -> dict:
        return json.loads(http_get(port, "/health"))["replica"]

    process = launch()
    try:
        await up(process)
        await send(f"ws://127.0.0.1:{port}", KeyStore(root).issue("node", "node7", 600)[0], made)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    process = launch()
    try:
        await up(process)
        await eventually(lambda: health()["state"] == "caught-up", what="caught up after the restart")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    await check_segments_copied(s3_env, location, made)


# --- restore --------------------------------------------------------------------------------------------

# The shape (play_*) is not in the copy: a restore reads it from each segment's bytes, as ingest did.
ROW = ("camera, node, start_us, end_us, frames, size_bytes, sha256, codec, width_px, height_px, path, received_us, "
       f"{SHAPE_SELECT}")
EVENT = ("camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, bbox_h, thumb_us, detail, locked, "
         "open, label, label_score, label_x, label_y, label_w, label_h, labels")


def index_contents(root: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return {
            "segments": conn.execute(f"SELECT {ROW} FROM segments ORDER BY camera, start_us").fetchall(),
            "events": conn.execute(f"SELECT {EVENT} FROM events ORDER BY camera, start_us, kind").fetchall(),
            "labels": conn.execute("SELECT e.camera, e.start_us, l.label, l.count FROM event_labels l JOIN events e "
                                   "ON e.id = l.event_id ORDER BY 1, 2, 3").fetchall(),
            "snapshots": conn.execute("SELECT e.camera, e.start_us, s.frame_us, s.width, s.height, s.jpeg FROM "
                                      "event_snapshots s JOIN events e ON e.id = s.event_id ORDER BY 1, 2").fetchall(),
        }


async def test_restore_builds_the_same_index_and_segments_from_the_copy(replicated, s3_env, tmp_path):
    restored = tmp_path / "restored"
    done = await asyncio.to_thread(sht, s3_env, "restore", "--from", replicated.location.url(), "--root",
                                   str(restored))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"restored {len(replicated.segments)} segments" in done.stdout and "and 2 events (1 snapshots)" in \
        done.stdout, done.stdout
    original = index_contents(replicated.root)
    assert index_contents(restored) == original and original["labels"] and original["snapshots"]
    assert all(row[-1] is not None for row in original["segments"])  # each with its shape (play_codec)
    for header, data in replicated.segments:
        assert (restored / "segments" / segment_name(header.camera, header.start_us)).read_bytes() == data
    checked = await asyncio.to_thread(sht, s3_env, "check", "--root", str(restored), "--deep")
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr


async def test_restore_onto_s3_segments(replicated, s3_env, tmp_path):
    onto = s3_env.url(BUCKET, prefix=f"restored{next(_prefixes)}")
    restored = tmp_path / "restored"
    done = await asyncio.to_thread(sht, s3_env, "restore", "--from", replicated.location.url(), "--root",
                                   str(restored), "--segments", onto)
    assert done.returncode == 0, done.stdout + done.stderr
    assert index_contents(restored) == index_contents(replicated.root)
    checked = await asyncio.to_thread(sht, s3_env, "check", "--root", str(restored), "--segments", onto, "--deep")
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr


async def test_restore_refuses_in_one_line_what_it_cannot_do(replicated, s3_env, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    nobody = f"s3://{REPLICA}?endpoint=http://127.0.0.1:{free_ports(1)[0]}"
    empty = s3_env.url(REPLICA, prefix="nothing-here")
    for args, says in (
            ((replicated.location.url(), used), f"{used} is not empty"),
            ((nobody, tmp_path / "a"), "does not answer"),
            ((empty, tmp_path / "b"), "holds no off-site copy"),
            (("file:/srv", tmp_path / "c"), "--from 'file:/srv': the copy goes to an object store")):
        done = await asyncio.to_thread(sht, s3_env, "restore", "--from", args[0], "--root", str(args[1]))
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written when it cannot start
