"""The segment storage interface (store/segments), the same tests for each backend: ingest writes through it,
check/repair/rebuild list and read through it, retention deletes through it, thumbnails and exports read
through it. The file backend runs here in a directory of its own (``--segments file:DIR``); the S3 backend
against a real SeaweedFS (tests/store/test_segments_s3.py adds it)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.clock import now_us
from shared.protocol.ingest import Ack, SegmentHeader
from store.index.db import Index
from store.ingest.writer import Ingestor
from store.maintenance import garbage
from store.maintenance.check import check_store
from store.maintenance.rebuild import rebuild_index
from store.maintenance.retention import RetentionPolicy, sweep
from store.media.export import export_clip
from store.media.thumbs import ThumbnailCache
from store.segments import SegmentStore, name_of, row_path, segment_name
from store.segments.files import FileSegments
from tests.store.test_check import make_segments


@pytest.fixture(scope="module")
def recorded() -> list[tuple[SegmentHeader, bytes]]:
    start = (now_us() // 1_000_000 - 7200) * 1_000_000  # two hours ago: young enough for any --max-age
    return make_segments("cam0", start) + make_segments("cam1", start + 50_000)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SegmentStore]:
    segments = FileSegments.at(tmp_path / "elsewhere")
    await segments.start()
    yield segments
    await segments.close()


async def ingest_all(root: Path, segments: SegmentStore, recorded: list[tuple[SegmentHeader, bytes]]) -> Index:
    index = await Index.open(root / "index.sqlite3")
    ingestor = Ingestor(root, index, segments=segments)
    for header, data in recorded:
        assert isinstance(await ingestor.ingest(header, memoryview(data)), Ack)
    return index


def rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute("SELECT camera, start_us, size_bytes, sha256, path FROM segments "
                            "ORDER BY camera, start_us").fetchall()


def read(segments: SegmentStore, name: str) -> bytes:
    with segments.open_local(name) as path:
        return path.read_bytes()


async def test_ingest_stores_the_bytes_under_the_layout_and_the_row_names_them(tmp_path, backend, recorded):
    index = await ingest_all(tmp_path, backend, recorded)
    await index.close()
    names = sorted(segment_name(h.camera, h.start_us) for h, _ in recorded)
    listed = sorted([(e.name, e.size) async for e in backend.list_all()])
    assert listed == sorted((segment_name(h.camera, h.start_us), len(d)) for h, d in recorded)
    for header, data in recorded:
        assert await asyncio.to_thread(read, backend, segment_name(header.camera, header.start_us)) \
            == data
    assert [r[4] for r in rows(tmp_path)] == [row_path(n) for n in names]
    for row in rows(tmp_path):
        assert row[3] == hashlib.sha256(await asyncio.to_thread(read, backend, name_of(row[4]) or "")).hexdigest()
    if isinstance(backend, FileSegments):
        assert not (tmp_path / "segments").exists()  # nothing under ROOT/segments: all in the directory given


async def test_check_repair_and_rebuild_work_through_the_backend(tmp_path, backend, recorded):
    index = await ingest_all(tmp_path, backend, recorded)
    before = rows(tmp_path)
    try:
        assert (await check_store(tmp_path, index, deep=True, segments=backend)).ok
        orphan, mismatched = before[0], before[1]
        await index.conn.execute("DELETE FROM segments WHERE path = ?", (orphan[4],))
        await index.conn.commit()
        damaged = name_of(mismatched[4]) or ""
        await backend.delete_many([damaged])  # a bucket's PUT never replaces an object (store/segments/s3.py)
        await backend.put(damaged, b"other bytes", hashlib.sha256(b"other bytes").hexdigest())
        report = await check_store(tmp_path, index, deep=True, segments=backend)
        assert report.counts() == {"missing": 0, "size": 1, "sha256": 0, "orphan": 1, "temporary": 0}
        repaired = await check_store(tmp_path, index, deep=True, repair=True, segments=backend)
        assert len(repaired.repaired) == 2 and not repaired.unrepaired, repaired.unrepaired
        assert (await check_store(tmp_path, index, deep=True, segments=backend)).ok
        assert rows(tmp_path) == [r for r in before if r != mismatched]  # the orphan is back as ingest made it
        assert not await backend.exists(name_of(mismatched[4]) or "")  # in quarantine, not deleted
    finally:
        await index.close()
    rebuilt = await rebuild_index(tmp_path, backend)
    assert rebuilt.indexed == len(recorded) - 1 and not rebuilt.skipped
    assert rows(tmp_path) == [r for r in before if r != mismatched]


async def test_retention_deletes_the_segments_through_the_backend(tmp_path, backend, recorded):
    index = await ingest_all(tmp_path, backend, recorded)
    try:
        report = await sweep(index, tmp_path, RetentionPolicy(max_bytes=1), now_us(), segments=backend)
        assert report.deleted == len(recorded) and rows(tmp_path) == []
        assert len([e async for e in backend.list_all()]) == len(recorded)  # rows first, the segments after
        collected = await garbage.collect(index.conn, tmp_path, segments=backend)
        assert (collected.files, collected.errors) == (len(recorded), 0)
        assert [e async for e in backend.list_all()] == [] and await garbage.pending(index.conn) == (0, 0)
    finally:
        await index.close()


async def test_thumbnails_and_exports_read_through_the_backend(tmp_path, backend, recorded):
    index = await ingest_all(tmp_path, backend, recorded)
    await index.close()
    header = recorded[0][0]
    name = segment_name(header.camera, header.start_us)
    fetched: list[str] = []

    def fetch():  # noqa: ANN202 - what MediaRequests passes: the backend's open_local, counted
        fetched.append(name)
        return backend.open_local(name)

    cache = ThumbnailCache(tmp_path / "cache" / "thumbs", 10**7)
    key = tmp_path / row_path(name)

    def thumb():  # noqa: ANN202
        return cache.get_or_make(key, header.start_us, header.start_us + 300_000, 160, fetch)

    first = await asyncio.to_thread(thumb)
    assert first.jpeg[:2] == b"\xff\xd8" and first.width == 160 and fetched == [name]
    again = await asyncio.to_thread(thumb)
    assert again == first and fetched == [name]  # a cached thumbnail fetches nothing
    headers = [h for h, _ in recorded if h.camera == "cam0"]
    sources = [(functools.partial(backend.open_local, segment_name(h.camera, h.start_us)), h.start_us)
               for h in headers]
    out = tmp_path / "clip.mp4"
    result = await asyncio.to_thread(export_clip, sources, headers[0].start_us, headers[-1].end_us, out)
    assert (result.segments_used, result.frames) == (len(headers), sum(h.frames for h in headers))
