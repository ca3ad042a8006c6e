"""The S3 segment backend against a real SeaweedFS (tests/store/seaweed.py): one server for the module, a
prefix of its own per test. The backend-independent tests of test_segment_store.py run here too."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from websockets.asyncio.client import connect

from shared.clock import now_us
from shared.protocol.ingest import Ack, Refusal, SegmentHeader, encode_segment, parse_reply
from shared.query_client import StoreClient, StoreError
from shared.security import bearer
from store.admin.keys import KeyStore
from store.app import Store
from store.index.db import Index
from store.ingest.writer import Ingestor
from store.maintenance.retention import RetentionPolicy
from store.segments import SegmentStoreError, segment_name
from store.segments.s3 import DELETE_BATCH, S3Segments
from store.segments.url import S3Location, parse_segments_url
from tests.store.seaweed import BUCKET, Seaweed, free_ports
from tests.store.test_check import make_segments
from tests.store.test_segment_store import (  # noqa: F401 - the same tests, run here on S3
    ingest_all,
    test_check_repair_and_rebuild_work_through_the_backend,
    test_ingest_stores_the_bytes_under_the_layout_and_the_row_names_them,
    test_retention_deletes_the_segments_through_the_backend,
    test_thumbnails_and_exports_read_through_the_backend,
)

REPO = Path(__file__).resolve().parents[2]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def seaweed(own_seaweed: Seaweed) -> Seaweed:
    """This module kills and starts its SeaweedFS: one of its own, not the run's shared one (tests/servers.py)."""
    return own_seaweed


@pytest.fixture(scope="module")
def recorded() -> list[tuple[SegmentHeader, bytes]]:
    start = (now_us() // 1_000_000 - 7200) * 1_000_000  # two hours ago: young enough for any --max-age
    return make_segments("cam0", start) + make_segments("cam1", start + 50_000)


def new_backend(seaweed: Seaweed, root: Path, bucket: str = BUCKET) -> S3Segments:
    location = parse_segments_url(seaweed.url(bucket, prefix=f"test{next(_prefixes)}"))
    assert isinstance(location, S3Location)
    return S3Segments(location, root / "cache" / "segments")


@pytest.fixture
async def backend(s3_env: Seaweed, tmp_path: Path) -> AsyncIterator[S3Segments]:
    segments = new_backend(s3_env, tmp_path)
    await segments.start()
    yield segments
    await segments.close()


async def head(seaweed: Seaweed, key: str) -> dict:
    async with seaweed.client() as s3:
        return await s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")


async def get(seaweed: Seaweed, key: str) -> bytes:
    async with seaweed.client() as s3:
        reply = await s3.get_object(Bucket=BUCKET, Key=key)
        async with reply["Body"] as body:
            return await body.read()


def rows(root: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute("SELECT camera, start_us FROM segments ORDER BY start_us").fetchall()


async def test_a_segment_is_put_with_the_sha256_the_server_verified(tmp_path, backend, recorded, s3_env):
    header, data = recorded[0]
    index = await Index.open(tmp_path / "index.sqlite3")
    try:
        assert await Ingestor(tmp_path, index, segments=backend).ingest(header, memoryview(data)) == \
            Ack(header.segment_id)
    finally:
        await index.close()
    key = backend.key(segment_name(header.camera, header.start_us))
    assert key.startswith(backend.prefix) and key.endswith(f"cam0/{key.split('/')[-3]}/{key.split('/')[-2]}/"
                                                           f"{header.start_us}.mp4")
    assert await get(s3_env, key) == data
    stored = await head(s3_env, key)
    assert stored["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert stored["ContentLength"] == len(data)


class DamagedOnTheWay(S3Segments):
    """Bytes damaged between the store's own check and the server (a bad NIC, a proxy): the PUT carries the
    right SHA-256 of other bytes."""

    async def put(self, name: str, data: memoryview | bytes, sha256_hex: str) -> None:
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0xFF
        await super().put(name, bytes(damaged), sha256_hex)


async def test_a_wrong_checksum_is_refused_by_the_server_and_no_row_is_written(tmp_path, s3_env, recorded):
    header, data = recorded[0]
    segments = DamagedOnTheWay(new_backend(s3_env, tmp_path).location, tmp_path / "cache")
    await segments.start()
    index = await Index.open(tmp_path / "index.sqlite3")
    try:
        reply = await Ingestor(tmp_path, index, segments=segments).ingest(header, memoryview(data))
        assert isinstance(reply, Refusal) and reply.retry and reply.code == "write-failed", reply
        assert "BadDigest" in reply.message and s3_env.endpoint in reply.message
        assert rows(tmp_path) == []
        assert not await segments.exists(segment_name(header.camera, header.start_us))
        with pytest.raises(SegmentStoreError, match="BadDigest"):  # and straight through the backend
            await S3Segments.put(segments, "cam0/x.mp4", data, hashlib.sha256(b"other").hexdigest())
    finally:
        await index.close()
        await segments.close()


async def test_the_endpoint_down_is_refused_with_retry_and_the_resend_lands_once_it_is_back(tmp_path, s3_env,
                                                                                                recorded):
    backend = new_backend(s3_env, tmp_path)
    await backend.start()
    index = await Index.open(tmp_path / "index.sqlite3")
    ingestor = Ingestor(tmp_path, index, segments=backend)
    (header, data), (later, later_data) = recorded[0], recorded[1]
    try:
        assert isinstance(await ingestor.ingest(header, memoryview(data)), Ack)
        await asyncio.to_thread(s3_env.kill)
        reply = await ingestor.ingest(later, memoryview(later_data))
        assert isinstance(reply, Refusal) and reply.retry and reply.code == "storage-unavailable"
        assert s3_env.endpoint in reply.message and "does not answer" in reply.message
        assert rows(tmp_path) == [(header.camera, header.start_us)]  # nothing indexed for it
        await asyncio.to_thread(s3_env.start)  # the same data directory: what it had, it has again
        assert await ingestor.ingest(later, memoryview(later_data)) == Ack(later.segment_id)
        assert rows(tmp_path) == [(h.camera, h.start_us) for h in (header, later)]
        assert await get(s3_env, backend.key(segment_name(later.camera, later.start_us))) == later_data
        assert await get(s3_env, backend.key(segment_name(header.camera, header.start_us))) == data
    finally:
        await index.close()
        await backend.close()


async def test_start_refuses_a_missing_bucket_bad_credentials_and_a_dead_endpoint_in_one_line(
        tmp_path, s3_env, monkeypatch):
    missing = new_backend(s3_env, tmp_path, bucket="no-such-bucket")
    with pytest.raises(SegmentStoreError, match="there is no bucket no-such-bucket at http://127.0.0.1:") as err:
        await missing.start()
    assert "\n" not in str(err.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(SegmentStoreError, match="refused the credentials.*AWS_ACCESS_KEY_ID"):
        await new_backend(s3_env, tmp_path).start()
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(SegmentStoreError, match="no S3 credentials for .*: set AWS_ACCESS_KEY_ID"):
        await new_backend(s3_env, tmp_path).start()
    for key, value in s3_env.env().items():
        monkeypatch.setenv(key, value)
    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"
    dead = S3Segments(S3Location(BUCKET, "", nobody), tmp_path / "cache")
    with pytest.raises(SegmentStoreError, match=f"{nobody} does not answer"):
        await dead.start()
    store = Store(tmp_path / "store", segments=dead)
    with pytest.raises(SegmentStoreError, match="does not answer"):
        await store.start("127.0.0.1", 0)


async def test_deletes_go_in_batches_of_at_most_1000(backend, monkeypatch):
    names = [f"cam9/2025-01-01/00/{i}.mp4" for i in range(DELETE_BATCH + 5)]
    semaphore = asyncio.Semaphore(32)

    async def put(name: str) -> None:
        async with semaphore:
            await backend.put(name, b"x", hashlib.sha256(b"x").hexdigest())

    await asyncio.gather(*(put(n) for n in names))
    client = backend._s3()
    calls: list[int] = []
    real = client.delete_objects

    async def counted(**kwargs):  # noqa: ANN003, ANN202
        calls.append(len(kwargs["Delete"]["Objects"]))
        return await real(**kwargs)

    monkeypatch.setattr(client, "delete_objects", counted)
    assert await backend.delete_many(names + ["cam9/2025-01-01/00/never-there.mp4"]) == 0
    assert calls == [DELETE_BATCH, 6]
    assert [e async for e in backend.list_all()] == []


async def test_a_store_on_s3_serves_ingest_thumbnails_exports_and_retention_deletes_the_objects(tmp_path, s3_env):
    root = tmp_path / "store"
    backend = new_backend(s3_env, root)
    running = Store(root, RetentionPolicy(max_age_us=None, min_free_bytes=None), segments=backend)
    await running.start("127.0.0.1", 0)
    keys = KeyStore(root)
    node, viewer = keys.issue("node", "node7", 600)[0], keys.issue("viewer", "viewer", 600)[0]
    start = 1_764_165_166_000_000
    made: list[tuple[SegmentHeader, bytes]] = make_segments("cam0", start)
    try:
        async with connect(f"ws://127.0.0.1:{running.port}/ingest", additional_headers=bearer(node),
                           max_size=2**22) as ws:
            for header, data in made:
                await ws.send(encode_segment(header, data))
                assert parse_reply(await ws.recv()) == Ack(header.segment_id)
        names = [segment_name(h.camera, h.start_us) for h, _ in made]
        assert sorted([e.name async for e in backend.list_all()]) == sorted(names)
        async with StoreClient(f"http://127.0.0.1:{running.port}", token=viewer) as client:
            jpeg: list[bytes] = []
            thumb = await client.call("thumbnail", camera="cam0", at_us=start + 1_500_000, width=160,
                                      on_chunk=jpeg.append)
            assert b"".join(jpeg)[:2] == b"\xff\xd8" and thumb["width"] == 160
            clip: list[bytes] = []
            result = await client.call("export", camera="cam0", from_us=start, to_us=made[-1][0].end_us,
                                       on_chunk=clip.append)
            with av.open(io.BytesIO(b"".join(clip)), "r") as container:
                packets = [p for p in container.demux(video=0) if p.size]
            assert len(packets) == result["frames"] == sum(h.frames for h, _ in made)
        running.retention.policy = RetentionPolicy(max_age_us=None, max_bytes=1)  # type: ignore[union-attr]
        running.retention.poke()  # type: ignore[union-attr]
        for _ in range(100):
            if not [e async for e in backend.list_all()]:
                break
            await asyncio.sleep(0.1)
        assert [e async for e in backend.list_all()] == [] and rows(root) == []
    finally:
        await running.stop()


async def test_an_export_with_the_endpoint_down_is_unavailable_not_no_footage(tmp_path, s3_env):
    """The footage is there, the bucket does not answer: the viewer must be told to try again, not that nothing was
    recorded (as a thumbnail is)."""
    root = tmp_path / "store"
    running = Store(root, RetentionPolicy(max_age_us=None, min_free_bytes=None), segments=new_backend(s3_env, root))
    await running.start("127.0.0.1", 0)
    keys = KeyStore(root)
    node, viewer = keys.issue("node", "node7", 600)[0], keys.issue("viewer", "viewer", 600)[0]
    start = 1_764_165_166_000_000
    made: list[tuple[SegmentHeader, bytes]] = make_segments("cam0", start)
    try:
        async with connect(f"ws://127.0.0.1:{running.port}/ingest", additional_headers=bearer(node),
                           max_size=2**22) as ws:
            for header, data in made:
                await ws.send(encode_segment(header, data))
                assert parse_reply(await ws.recv()) == Ack(header.segment_id)
        await asyncio.to_thread(s3_env.kill)
        try:
            async with StoreClient(f"http://127.0.0.1:{running.port}", token=viewer) as client:
                with pytest.raises(StoreError) as refused:  # the first segment cut (ranged reads), then whole ones
                    await client.call("export", camera="cam0", from_us=start + 300_000, to_us=made[-1][0].end_us,
                                      on_chunk=lambda _: None)
            assert refused.value.code == "unavailable" and s3_env.endpoint in refused.value.message, refused.value
        finally:
            await asyncio.to_thread(s3_env.start)  # the module's other tests use it
    finally:
        await running.stop()


def sht_store(seaweed: Seaweed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"} | seaweed.env()
    return subprocess.run([sys.executable, "-m", "sht", "store", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env=env)


async def test_the_admin_commands_take_segments_on_s3(tmp_path, backend, recorded, s3_env):
    index = await ingest_all(tmp_path, backend, recorded)
    await index.conn.execute("DELETE FROM segments WHERE start_us = ?", (recorded[0][0].start_us,))
    await index.conn.commit()
    await index.close()
    where = ["--root", str(tmp_path), "--segments", backend.location.url()]
    found = await asyncio.to_thread(sht_store, s3_env, "check", *where, "--deep")
    assert found.returncode == 1 and "files with no row (orphans)" in found.stdout, found.stdout + found.stderr
    repaired = await asyncio.to_thread(sht_store, s3_env, "check", *where, "--repair")
    assert repaired.returncode == 1 and "re-indexed orphan" in repaired.stdout, repaired.stdout + repaired.stderr
    clean = await asyncio.to_thread(sht_store, s3_env, "check", *where, "--deep")
    assert clean.returncode == 0 and "clean" in clean.stdout, clean.stdout + clean.stderr
    pruned = await asyncio.to_thread(sht_store, s3_env, "prune", *where, "--max-bytes", "1", "--min-free", "off")
    assert pruned.returncode == 0 and f"deleted {len(recorded)} files" in pruned.stdout, pruned.stdout + pruned.stderr
    assert [e async for e in backend.list_all()] == [] and rows(tmp_path) == []
    rebuilt = await asyncio.to_thread(sht_store, s3_env, "rebuild-index", *where)
    assert rebuilt.returncode == 0 and "indexed 0 segments" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
