"""Stores sharing one bucket never overwrite each other's segment objects (issue 16, "Faults"): against a real
SeaweedFS (tests/store/seaweed.py) and, for the ingest races, two stores' ``Ingestor`` on one real PostgreSQL index.

The per-process segment lock of store/ingest/writer.py does not span stores, so two stores can PUT the same segment
name at once. Each PUT carries ``If-None-Match: *``; a refused one (412) compares the object's SHA-256: the same
bytes are stored already, other bytes are a conflict and the object stays as it is (store/segments/s3.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.clock import now_us
from shared.fanout import AccessUnit
from shared.protocol.ingest import Ack, Refusal, SegmentHeader
from store.index.db import Index
from store.ingest.writer import Ingestor, KeyedLocks
from store.maintenance import check as check_module
from store.maintenance import garbage
from store.maintenance.check import check_store
from store.maintenance.retention import RetentionPolicy, sweep
from store.segments import SegmentConflict, segment_name
from store.segments.s3 import PROBES, S3Segments
from store.segments.url import S3Location, parse_segments_url
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster
from tests.store.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, Seaweed

W, H, FPS = 160, 120, 10
_prefixes = itertools.count()


def recorded_by(node: str, camera: str, start_us: int, seconds: int) -> list[tuple[SegmentHeader, bytes]]:
    """1 s segments of the same frames; another ``node`` embeds another id in each MP4: other bytes, same
    camera, start, frames and picture, so each is a valid segment for the same header but for ``node``."""
    src, enc = SyntheticSource(W, H, FPS), H264Encoder(W, H, FPS, keyframe_interval_s=1.0)
    seg = Segmenter(camera, segment_seconds=1, fps=FPS)
    encoded = [u for i in range(seconds * FPS) for u in enc.encode(src.read(i), start_us + i * 100_000)]
    units = [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded + enc.flush()]
    finished = [s for u in units if (s := seg.push(u))]
    if (last := seg.flush()) is not None:
        finished.append(last)
    return [build_segment(node, s, W, H, FPS) for s in finished]


@pytest.fixture(scope="module")
def versions() -> tuple[list[tuple[SegmentHeader, bytes]], list[tuple[SegmentHeader, bytes]]]:
    """Two recordings of the same camera and times that differ in their bytes."""
    start = (now_us() // 1_000_000 - 3600) * 1_000_000
    x, y = recorded_by("node7", "cam0", start, 6), recorded_by("node8", "cam0", start, 6)
    assert [(h.camera, h.start_us, h.frames) for h, _ in x] == [(h.camera, h.start_us, h.frames) for h, _ in y]
    assert all(hx.sha256 != hy.sha256 for (hx, _), (hy, _) in zip(x, y, strict=True))
    return x, y


def shared_location(seaweed: Seaweed) -> S3Location:
    location = parse_segments_url(seaweed.url(BUCKET, prefix=f"race{next(_prefixes)}"))
    assert isinstance(location, S3Location)
    return location


async def two_stores(location: S3Location, tmp_path: Path) -> tuple[S3Segments, S3Segments]:
    """Two stores' backends on one bucket prefix (each with its own root and cache, as two machines)."""
    a, b = S3Segments(location, tmp_path / "a" / "cache"), S3Segments(location, tmp_path / "b" / "cache")
    await a.start()
    await b.start()
    return a, b


async def object_bytes(seaweed: Seaweed, key: str) -> bytes:
    async with seaweed.client() as s3:
        reply = await s3.get_object(Bucket=BUCKET, Key=key)
        async with reply["Body"] as body:
            return await body.read()


async def keys_below(seaweed: Seaweed, prefix: str) -> list[str]:
    async with seaweed.client() as s3:
        reply = await s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(obj["Key"] for obj in reply.get("Contents", []))


async def test_a_put_of_other_bytes_never_replaces_an_object_and_the_same_bytes_count_as_stored(
        s3_env: Seaweed, tmp_path: Path, versions) -> None:
    (hx, x), (hy, y) = versions[0][0], versions[1][0]
    a, b = await two_stores(shared_location(s3_env), tmp_path)
    try:
        name = segment_name(hx.camera, hx.start_us)
        await a.put(name, x, hx.sha256)
        await b.put(name, x, hx.sha256)  # a resend of the same bytes through the other store: already stored
        with pytest.raises(SegmentConflict) as refused:
            await b.put(name, y, hy.sha256)
        assert refused.value.stored_sha256 == hx.sha256 and not refused.value.retry
        assert refused.value.code == "conflict" and b.key(name) in str(refused.value)
        assert await object_bytes(s3_env, a.key(name)) == x
        assert await b.stored_sha256(name) == hx.sha256 and await b.stored_sha256("cam0/nothing.mp4") is None
        assert a._conditional and b._conditional  # SeaweedFS honours If-None-Match: * (probed at the first PUT)
        # The probes cleaned up after themselves, and a listing would skip a leftover one.
        assert await keys_below(s3_env, a.key("")) == [a.key(name)]
        assert [s.name async for s in a.list_all()] == [name]
        assert PROBES.startswith("_")  # no camera id starts with "_"
    finally:
        await a.close()
        await b.close()


async def test_two_stores_racing_on_segments_keep_one_object_whose_bytes_the_one_row_names(
        s3_env: Seaweed, tmp_path: Path, versions, postgres: PostgresCluster) -> None:
    """The same segment names, other bytes, both stores at once: one is acknowledged, the other refused as a
    conflict (kept by its node), and the object and the row agree. The same bytes at once: both acknowledged,
    one row."""
    index_url = postgres.create_database()
    a, b = await two_stores(shared_location(s3_env), tmp_path)
    index_a, index_b = await Index.open(index_url), await Index.open(index_url)
    ingest_a, ingest_b = Ingestor(tmp_path / "a", index_a, segments=a), Ingestor(tmp_path / "b", index_b, segments=b)
    x, y = versions
    try:
        for (hx, dx), (hy, dy) in zip(x[:4], y[:4], strict=True):
            replies = await asyncio.gather(ingest_a.ingest(hx, memoryview(dx)), ingest_b.ingest(hy, memoryview(dy)))
            acked = [r for r in replies if isinstance(r, Ack)]
            refused = [r for r in replies if isinstance(r, Refusal)]
            assert len(acked) == 1 and not acked[0].duplicate and len(refused) == 1, replies
            assert refused[0].code == "conflict" and not refused[0].retry, refused[0]
            winner = dx if replies[0] is acked[0] else dy
            name = segment_name(hx.camera, hx.start_us)
            stored = await object_bytes(s3_env, a.key(name))
            assert stored == winner
            assert committed_rows(index_url, "SELECT sha256 FROM segments WHERE camera = ? AND start_us = ?",
                                  (hx.camera, hx.start_us)) == [(hashlib.sha256(stored).hexdigest(),)]
        for hx, dx in x[4:]:
            replies = await asyncio.gather(ingest_a.ingest(hx, memoryview(dx)), ingest_b.ingest(hx, memoryview(dx)))
            assert all(isinstance(r, Ack) for r in replies) and sum(not r.duplicate for r in replies) == 1, replies
            assert committed_rows(index_url, "SELECT sha256 FROM segments WHERE camera = ? AND start_us = ?",
                                  (hx.camera, hx.start_us)) == [(hx.sha256,)]
    finally:
        for closing in (index_a, index_b, a, b):
            await closing.close()


async def test_an_object_a_dead_store_left_without_its_row_is_indexed_by_the_resend_and_never_replaced(
        s3_env: Seaweed, tmp_path: Path, versions, postgres: PostgresCluster) -> None:
    """Store A PUT two segments and died before their rows: the node's resend of the same bytes through B is
    indexed once (an ack, not a duplicate: there was no row); other bytes under the other name are refused."""
    index_url = postgres.create_database()
    a, b = await two_stores(shared_location(s3_env), tmp_path)
    index_b = await Index.open(index_url)
    ingest_b = Ingestor(tmp_path / "b", index_b, segments=b)
    (h0, d0), (h1, d1) = versions[0][:2]
    (_, other1) = versions[1][1]
    try:
        for header, data in ((h0, d0), (h1, d1)):
            await a.put(segment_name(header.camera, header.start_us), data, header.sha256)  # then A dies
        assert await ingest_b.ingest(h0, memoryview(d0)) == Ack(h0.segment_id)
        assert committed_rows(index_url, "SELECT sha256 FROM segments") == [(h0.sha256,)]
        header_other = versions[1][1][0]
        reply = await ingest_b.ingest(header_other, memoryview(other1))
        assert isinstance(reply, Refusal) and reply.code == "conflict" and not reply.retry
        assert "sht store check" in reply.message
        assert await object_bytes(s3_env, a.key(segment_name(h1.camera, h1.start_us))) == d1
        assert await ingest_b.ingest(h1, memoryview(d1)) == Ack(h1.segment_id)
        assert sorted(committed_rows(index_url, "SELECT sha256 FROM segments")) == sorted([(h0.sha256,),
                                                                                           (h1.sha256,)])
    finally:
        for closing in (index_b, a, b):
            await closing.close()


def drop_if_none_match(request: Any, **_: Any) -> None:
    """A proxy or an older server that does not know the header: the PUT arrives without it."""
    if "If-None-Match" in request.headers:
        del request.headers["If-None-Match"]


async def test_a_server_that_ignores_if_none_match_is_found_out_and_each_put_looks_first(
        s3_env: Seaweed, tmp_path: Path, versions, caplog: pytest.LogCaptureFixture) -> None:
    (hx, x), (hy, y) = versions[0][0], versions[1][0]
    a, b = await two_stores(shared_location(s3_env), tmp_path)
    puts: list[str] = []
    b._client.meta.events.register("before-sign.s3.PutObject", drop_if_none_match)
    b._client.meta.events.register("before-call.s3.PutObject", lambda params, **_: puts.append(params["url_path"]))
    try:
        name = segment_name(hx.camera, hx.start_us)
        await a.put(name, x, hx.sha256)
        with caplog.at_level(logging.WARNING, logger="store.segments.s3"):
            with pytest.raises(SegmentConflict):
                await b.put(name, y, hy.sha256)
        assert b._conditional is False and "does not honour If-None-Match" in caplog.text
        assert s3_env.endpoint in caplog.text
        assert len(puts) == 2  # the probe's two PUTs (the second one overwrote: the header was dropped), no more
        await b.put(name, x, hx.sha256)  # already there: no PUT
        assert len(puts) == 2 and await object_bytes(s3_env, a.key(name)) == x
        other = segment_name(hx.camera, hx.start_us + 1)
        await b.put(other, y, hy.sha256)  # not there: PUT
        assert len(puts) == 3 and await object_bytes(s3_env, b.key(other)) == y
        assert await keys_below(s3_env, b.key(PROBES)) == []
    finally:
        await a.close()
        await b.close()


def slow_conditional_put(seaweed: Seaweed, key: str, body: bytes, seconds: float) -> int:
    """PUT ``body`` with ``If-None-Match: *``, trickled over ``seconds`` (a store on a slow link); its status."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="PUT", url=f"{seaweed.endpoint}/{BUCKET}/{key}", headers={
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(len(body)), "If-None-Match": "*",
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", seaweed.s3_port, timeout=30)
    try:
        connection.putrequest("PUT", f"/{BUCKET}/{key}", skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        for i in range(10):
            connection.send(body[i * len(body) // 10:(i + 1) * len(body) // 10])
            time.sleep(seconds / 10)
        return connection.getresponse().status
    finally:
        connection.close()


async def test_the_server_checks_if_none_match_when_the_object_lands_not_when_the_put_starts(
        s3_env: Seaweed, tmp_path: Path, versions) -> None:
    """What makes the race safe on SeaweedFS: a slow PUT that started first (no object then) is refused (412)
    when a faster PUT of other bytes landed while it was on its way, and the faster one's object stays."""
    (hx, x), (_, y) = versions[0][0], versions[1][0]
    fast = S3Segments(shared_location(s3_env), tmp_path / "cache")
    await fast.start()
    try:
        name = segment_name(hx.camera, hx.start_us)
        status: list[int] = []
        slow = threading.Thread(target=lambda: status.append(slow_conditional_put(s3_env, fast.key(name), y, 1.5)))
        slow.start()
        await asyncio.sleep(0.5)  # the slow PUT's headers are in, its body on its way
        await fast.put(name, x, hx.sha256)
        await asyncio.to_thread(slow.join)
        assert status == [412] and await object_bytes(s3_env, fast.key(name)) == x
    finally:
        await fast.close()


# ---- removal (retention's collector, check --repair) against another store's ingest: store/index/fence.py ----

class SharedCluster:
    """Store A (its retention's own index connection, its backend) and store B (its ingest) on one PostgreSQL index
    and one bucket prefix, as two machines; B has taken ``first`` and A's retention has moved its row to garbage."""

    def __init__(self, s3: Seaweed, index_url: str, a: S3Segments, b: S3Segments, index_a: Index, index_b: Index,
                 root: Path) -> None:
        self.s3, self.index_url, self.a, self.b, self.root = s3, index_url, a, b, root
        self.index_a, self.index_b = index_a, index_b
        self.ingest_b = Ingestor(root / "b", index_b, segments=b)

    async def close(self) -> None:
        for closing in (self.index_a, self.index_b, self.a, self.b):
            await closing.close()

    async def retention_removes(self, header: SegmentHeader) -> None:
        """A's retention sweeps the segment's row into garbage (its object is A's collector's to delete)."""
        report = await sweep(self.index_a, self.root / "a", RetentionPolicy(max_age_us=60_000_000), now_us(),
                             segments=self.a)
        assert report.deleted >= 1 and self.rows(header) == []
        assert committed_rows(self.index_url, "SELECT COUNT(*) FROM garbage") != [(0,)]

    def rows(self, header: SegmentHeader) -> list[tuple[Any, ...]]:
        return committed_rows(self.index_url, "SELECT sha256 FROM segments WHERE camera = ? AND start_us = ?",
                              (header.camera, header.start_us))

    async def stored(self, header: SegmentHeader) -> bool:
        return await self.a.exists(segment_name(header.camera, header.start_us))


@pytest.fixture
async def cluster(s3_env: Seaweed, tmp_path: Path, postgres: PostgresCluster) -> AsyncIterator[SharedCluster]:
    index_url = postgres.create_database()
    a, b = await two_stores(shared_location(s3_env), tmp_path)
    shared = SharedCluster(s3_env, index_url, a, b, await Index.open(index_url), await Index.open(index_url),
                           tmp_path)
    try:
        yield shared
    finally:
        await shared.close()


async def test_a_resend_stored_while_another_stores_collector_deletes_its_object_is_stored_again(
        cluster: SharedCluster, versions, caplog: pytest.LogCaptureFixture) -> None:
    """Review of issue 16 (N1): B takes a resend of a segment A's retention removed; its PUT finds the same bytes
    (412) and counts them as stored; A's collector, which finds no row, deletes the object before B writes its
    row. B's row must not be acknowledged without its object: it finds the object gone and PUTs it again."""
    header, data = versions[0][0]
    assert await cluster.ingest_b.ingest(header, memoryview(data)) == Ack(header.segment_id)
    await cluster.retention_removes(header)
    real_put, collected = cluster.b.put, []

    async def put_then_a_collects(name: str, payload: memoryview | bytes, sha256: str) -> None:
        await real_put(name, payload, sha256)  # 412: the same bytes are there, stored
        if not collected:  # A's whole collection, between B's PUT and B's row
            collected.append(await garbage.collect(cluster.index_a.conn, cluster.root / "a", locks=KeyedLocks(),
                                                   segments=cluster.a))

    cluster.b.put = put_then_a_collects  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="store.ingest.writer"):
        reply = await cluster.ingest_b.ingest(header, memoryview(data))
    assert collected[0].files == 1  # A deleted the object B had just found
    assert reply == Ack(header.segment_id) and cluster.rows(header) == [(header.sha256,)]
    assert await cluster.stored(header), "acknowledged, indexed, and its object deleted"
    assert await object_bytes_of(cluster, header) == data
    assert "storing it again" in caplog.text
    assert committed_rows(cluster.index_url, "SELECT COUNT(*) FROM garbage") == [(0,)]
    assert (await check_store(cluster.root / "check", cluster.index_b, deep=True, segments=cluster.a)).ok


async def test_a_row_waits_while_another_store_deletes_its_hour_and_finds_its_object_gone(
        cluster: SharedCluster, versions) -> None:
    """The reviewer's interleaving, with ``check --repair`` as the collector (an admin process, no store's locks):
    it found no row and is about to delete; B's resend PUT lands (412, the same bytes) and B writes its row. B's
    row waits for the deletion (the hour's fence), then finds the object gone and PUTs it again."""
    header, data = versions[0][1]
    assert await cluster.ingest_b.ingest(header, memoryview(data)) == Ack(header.segment_id)
    await cluster.retention_removes(header)
    admin = S3Segments(cluster.a.location, cluster.root / "admin" / "cache")  # check --repair's own client
    await admin.start()
    real_delete, real_put = admin.delete_many, cluster.b.put
    b_stored = asyncio.Event()
    waited: list[bool] = []

    async def put(name: str, payload: memoryview | bytes, sha256: str) -> None:
        await real_put(name, payload, sha256)
        b_stored.set()

    async def b_ingests_before_the_delete(names: list[str]) -> int:
        resend = asyncio.create_task(cluster.ingest_b.ingest(header, memoryview(data)))
        await b_stored.wait()  # B's PUT found the object and counted it as stored
        done, _ = await asyncio.wait({resend}, timeout=0.5)  # B writing its row now, without a fence, would commit
        waited.append(not done)
        errors = await real_delete(names)
        replies.append(resend)
        return errors

    replies: list[asyncio.Task] = []
    admin.delete_many = b_ingests_before_the_delete  # type: ignore[method-assign]
    cluster.b.put = put  # type: ignore[method-assign]
    try:
        admin_index = await Index.open(cluster.index_url)
        try:
            report = await check_store(cluster.root / "check", admin_index, repair=True, segments=admin)
        finally:
            await admin_index.close()
        assert report.pending_deletion == 1, report
        assert await replies[0] == Ack(header.segment_id)
    finally:
        await admin.close()
    assert waited == [True]  # B's row waited for the deletion to end
    assert cluster.rows(header) == [(header.sha256,)] and await cluster.stored(header), "acknowledged and lost"
    assert await object_bytes_of(cluster, header) == data


async def test_repair_does_not_index_an_orphan_another_stores_retention_deleted_under_it(
        cluster: SharedCluster, versions, monkeypatch: pytest.MonkeyPatch) -> None:
    """check --repair reads an orphan to index it; meanwhile A's retention removes rows around it (its range now
    covers the orphan) and A's collector, finding no row, deletes it. The repair must not write a row for an object
    that is gone."""
    header, data = versions[0][2]
    name = segment_name(header.camera, header.start_us)
    await cluster.b.put(name, data, header.sha256)  # a store PUT it and died before its row: an orphan
    loop = asyncio.get_running_loop()
    real_describe = check_module.describe_segment

    async def a_removes_the_hour() -> None:
        await cluster.index_a.conn.execute(
            "INSERT INTO garbage (camera, from_us, to_us, segments, size_bytes) VALUES (?, ?, ?, 1, 1)",
            (header.camera, header.start_us - 1, header.start_us + 1))
        await cluster.index_a.conn.commit()
        collected = await garbage.collect(cluster.index_a.conn, cluster.root / "a", locks=KeyedLocks(),
                                          segments=cluster.a)
        assert collected.files == 1

    def describe_then_a_collects(segments, entry):  # type: ignore[no-untyped-def]  # a worker thread
        row = real_describe(segments, entry)
        asyncio.run_coroutine_threadsafe(a_removes_the_hour(), loop).result(30)
        return row

    monkeypatch.setattr(check_module, "describe_segment", describe_then_a_collects)
    report = await check_store(cluster.root / "check", cluster.index_b, repair=True, segments=cluster.a)
    assert report.counts()["orphan"] == 1
    assert any("deleted meanwhile" in line for line in report.repaired), report.repaired
    assert cluster.rows(header) == [] and not await cluster.stored(header)
    monkeypatch.undo()
    assert (await check_store(cluster.root / "check", cluster.index_b, segments=cluster.a)).ok


async def test_repair_leaves_a_mismatched_object_a_store_indexed_again_between_its_row_and_its_move(
        cluster: SharedCluster, versions) -> None:
    """check --repair removes the row of an object whose bytes do not match it, then moves the object to
    quarantine; between the two, B takes a resend of exactly those bytes (its PUT finds them: stored) and indexes
    them. The object now has its row: it stays."""
    header, data = versions[0][3]
    assert await cluster.ingest_b.ingest(header, memoryview(data)) == Ack(header.segment_id)
    await cluster.index_b.conn.execute("UPDATE segments SET sha256 = ? WHERE start_us = ?", ("0" * 64, header.start_us))
    await cluster.index_b.conn.commit()
    admin = await Index.open(cluster.index_url)
    real_commit, resent = admin.conn.commit, []

    async def commit_then_b_takes_the_resend() -> None:
        await real_commit()  # the first commit of the repair: the mismatched row is gone
        if not resent:
            resent.append(await cluster.ingest_b.ingest(header, memoryview(data)))

    admin.conn.commit = commit_then_b_takes_the_resend  # type: ignore[method-assign]
    try:
        report = await check_store(cluster.root / "check", admin, deep=True, repair=True, segments=cluster.a)
    finally:
        admin.conn.commit = real_commit  # type: ignore[method-assign]
        await admin.close()
    assert report.counts()["sha256"] == 1 and resent == [Ack(header.segment_id)], (report, resent)
    assert any("indexed meanwhile" in line for line in report.repaired), report.repaired
    assert cluster.rows(header) == [(header.sha256,)] and await cluster.stored(header), "acknowledged and moved"


async def object_bytes_of(cluster: SharedCluster, header: SegmentHeader) -> bytes:
    return await object_bytes(cluster.s3, cluster.a.key(segment_name(header.camera, header.start_us)))
