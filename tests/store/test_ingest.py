import pytest

from shared.protocol.ingest import Ack, Refusal, SegmentHeader, sha256_hex
from store.app import Store
from store.index.db import Index
from store.ingest import writer as ingest_module
from store.ingest.writer import Ingestor, segment_relpath
from store.segments import files as segment_files
from tests.store.index_backends import committed_rows
from tests.store.real_segments import real_mp4

START = 1_764_165_166_000_000  # 2025-11-26T13:52:46Z


def header(data: bytes, start: int = START, **changes) -> SegmentHeader:
    frames = 2 if data == real_mp4(2) else 1
    fields = dict(node="node0", camera="cam0", start_us=start, end_us=start + 1_000_000,
                  frames=frames, bytes=len(data), sha256=sha256_hex(data))
    fields.update(changes)
    return SegmentHeader(**fields)


@pytest.fixture
async def ingestor(tmp_path, index_url):
    index = await Index.open(index_url)
    yield Ingestor(tmp_path, index)
    await index.close()


def test_layout_is_camera_day_hour_utc():
    assert str(segment_relpath("cam0", START)) == f"segments/cam0/2025-11-26/13/{START}.mp4"


async def test_ingest_writes_file_then_row_then_acks(ingestor, tmp_path, index_url):
    data = real_mp4()
    reply = await ingestor.ingest(header(data), memoryview(data))
    assert reply == Ack(f"cam0-{START}")
    path = tmp_path / segment_relpath("cam0", START)
    assert path.read_bytes() == data
    rows = committed_rows(index_url, "SELECT camera, start_us, size_bytes, sha256, path FROM segments")
    assert rows == [("cam0", START, len(data), sha256_hex(data), str(segment_relpath("cam0", START)))]
    if index_url.startswith("sqlite:"):
        assert committed_rows(index_url, "PRAGMA journal_mode") == [("wal",)]
    assert not list(tmp_path.rglob("*.tmp-*"))


async def test_resend_is_acknowledged_without_a_duplicate(ingestor, index_url):
    data = real_mp4()
    await ingestor.ingest(header(data), memoryview(data))
    reply = await ingestor.ingest(header(data), memoryview(data))
    assert reply == Ack(f"cam0-{START}", duplicate=True)
    assert committed_rows(index_url, "SELECT COUNT(*) FROM segments") == [(1,)]


async def test_same_identity_different_content_is_refused_and_the_original_kept(ingestor, tmp_path):
    first, second = real_mp4(1), real_mp4(2)
    await ingestor.ingest(header(first), memoryview(first))
    reply = await ingestor.ingest(header(second), memoryview(second))
    assert isinstance(reply, Refusal) and reply.code == "conflict" and not reply.retry
    assert (tmp_path / segment_relpath("cam0", START)).read_bytes() == first


async def test_checksum_mismatch_is_refused_and_nothing_stored(ingestor, tmp_path):
    h = header(real_mp4(1))
    reply = await ingestor.ingest(h, memoryview(real_mp4(2)))
    assert isinstance(reply, Refusal) and reply.code == "checksum-mismatch" and reply.retry
    assert not (tmp_path / "segments").exists()


async def test_full_disk_is_refused_with_the_cause(ingestor, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "_free_bytes", lambda root: 1000)
    reply = await ingestor.ingest(header(real_mp4()), memoryview(real_mp4()))
    assert isinstance(reply, Refusal) and reply.code == "disk-full" and reply.retry
    assert "free" in reply.message and not (tmp_path / "segments").exists()


async def test_failed_write_leaves_no_row(ingestor, index_url, monkeypatch):
    def broken(path, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(segment_files, "write_atomic", broken)  # the file backend's durable write
    reply = await ingestor.ingest(header(real_mp4()), memoryview(real_mp4()))
    assert isinstance(reply, Refusal) and reply.code == "write-failed"
    assert "No space left" in reply.message
    assert committed_rows(index_url, "SELECT COUNT(*) FROM segments") == [(0,)]


async def test_store_start_removes_temporaries(tmp_path):
    leftover = tmp_path / "segments" / "cam0" / "2025-11-26" / "13" / "1.mp4.tmp-dead"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    store = Store(tmp_path)
    await store.start("127.0.0.1", 0)
    try:
        assert not leftover.exists()
    finally:
        await store.stop()


@pytest.mark.parametrize("mangle, problem", [
    (lambda d: d[:40] + bytes(len(d) - 40), "not a readable MP4"),
    (lambda d: b"\x00" * len(d), "not a readable MP4"),
])
async def test_bytes_that_are_not_a_segment_are_refused_and_not_stored(ingestor, tmp_path, mangle, problem):
    data = mangle(real_mp4())
    reply = await ingestor.ingest(header(data), memoryview(data))  # the checksum matches: it is the content
    assert isinstance(reply, Refusal) and reply.code == "bad-media" and not reply.retry
    assert problem in reply.message
    assert not (tmp_path / "segments").exists()


async def test_frame_count_must_match_the_header(ingestor, tmp_path):
    data = real_mp4(2)
    reply = await ingestor.ingest(header(data, frames=5), memoryview(data))
    assert isinstance(reply, Refusal) and reply.code == "bad-media" and "holds 2 frames" in reply.message
