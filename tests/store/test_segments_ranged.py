"""Ranged reads of S3 objects (store/segments/ranged.py) against a real SeaweedFS (tests/store/seaweed.py, the run's
shared one, a prefix per test): the reader reads and seeks as the bytes themselves do, thumbnails and exports on S3 are
the same bytes as on files while reading a fraction of the object, and an object deleted or replaced under a reader is a
clear error, never other pictures."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from functools import lru_cache, partial
from pathlib import Path
from types import SimpleNamespace

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from shared.protocol.ingest import SegmentHeader
from store.media.export import ExportError, export_clip
from store.media.thumbs import ThumbnailCache, nearest_frame
from store.segments import segment_name
from store.segments.files import FileSegments
from store.segments.ranged import BLOCK_BYTES, BlockCache, SegmentChanged
from store.segments.s3 import S3Segments
from tests.store.seaweed import BUCKET, Seaweed
from tests.store.test_segments_s3 import new_backend

T0 = 1_764_165_160_000_000
SECONDS = 10


@lru_cache(maxsize=1)
def ten_second_segments() -> tuple[tuple[SegmentHeader, bytes], ...]:
    """Two real consecutive 10 s segments, 1280x720 at 10 fps, 1 s GOP (a camera's default but for the frame
    rate): ~1.8 MB each, the moov at the end as the node writes it."""
    width, height, fps = 1280, 720, 10
    src, enc = SyntheticSource(width, height, fps), H264Encoder(width, height, fps, keyframe_interval_s=1.0)
    seg = Segmenter("cam0", segment_seconds=SECONDS, fps=fps)
    encoded = [u for i in range(2 * SECONDS * fps + 1) for u in enc.encode(src.read(i), T0 + i * 100_000)]
    finished = [s for u in encoded + enc.flush() if (s := seg.push(AccessUnit.build(u.capture_us, u.keyframe,
                                                                                         u.data)))]
    return tuple(build_segment("node0", s, width, height, fps) for s in finished[:2])


@pytest.fixture
async def stored(s3_env: Seaweed, tmp_path: Path) -> AsyncIterator[tuple[S3Segments, FileSegments, list[str]]]:
    """The two segments on S3 and in a files directory; their names."""
    s3, files = new_backend(s3_env, tmp_path / "s3"), FileSegments(tmp_path / "files")
    await s3.start()
    names = []
    for header, data in ten_second_segments():
        name = segment_name(header.camera, header.start_us)
        for backend in (s3, files):
            await backend.put(name, data, hashlib.sha256(data).hexdigest())
        names.append(name)
    yield s3, files, names
    await s3.close()


def fetched(s3: S3Segments, work: Callable[[], object]) -> tuple[object, int]:
    """``work()`` with an empty block cache, and the bytes its ranged GETs brought."""
    s3.blocks.clear()
    before = s3.blocks.fetched_bytes
    result = work()
    return result, s3.blocks.fetched_bytes - before


Op = tuple[str, int, int]
ops = st.lists(st.one_of(
    st.tuples(st.just("seek"), st.integers(0, 12_000), st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])),
    st.tuples(st.just("read"), st.integers(-1, 9_000), st.just(0)),
    st.tuples(st.just("readinto"), st.integers(0, 9_000), st.just(0)),
    st.tuples(st.just("prefetch"), st.integers(-100, 12_000), st.integers(0, 2_048)),  # (first, length)
), min_size=1, max_size=12)


async def test_the_reader_reads_and_seeks_like_the_bytes_themselves(s3_env, tmp_path):
    backend = new_backend(s3_env, tmp_path)
    await backend.start()
    data = bytes(range(256)) * 39 + b"tail"  # 9988 bytes: 9 blocks of 1 KiB and a short last one
    await backend.put("cam0/blob.mp4", data, hashlib.sha256(data).hexdigest())

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops)
    def same_as_bytesio(sequence: list[Op]) -> None:
        # A small block and a cache of three blocks: reads cross blocks, GETs grow, blocks are evicted.
        backend.blocks = BlockCache(max_bytes=3 * 1024, block_bytes=1024)
        want = io.BytesIO(data)
        wanted_end = 0  # the end of the span last prefetched

        def same_bytes(mine: bytes, theirs: bytes, at: int) -> None:
            """``mine`` is ``theirs``, or (a read from inside the prefetched span running past its end) the part of
            it up to a block boundary at or past that end; never nothing where there are bytes."""
            if len(mine) < len(theirs):
                assert mine and at < wanted_end <= at + len(mine) and (at + len(mine)) % 1024 == 0, (at, len(mine))
                want.seek(at + len(mine))
            assert mine == theirs[:len(mine)]

        with backend.open_media("cam0/blob.mp4") as got:
            assert got.size == len(data) and got.seekable() and got.readable()
            for op, n, whence in sequence:
                if op == "seek":  # n: the position wanted, whatever the whence
                    base = {io.SEEK_SET: 0, io.SEEK_CUR: want.tell(), io.SEEK_END: len(data)}[whence]
                    assert got.seek(n - base, whence) == want.seek(n - base, whence) == n
                elif op == "prefetch":  # whence: the span's length; at most 3 blocks, what the cache holds
                    rounds = backend.blocks.rounds
                    got.prefetch(n, n + whence)
                    assert backend.blocks.rounds - rounds <= 1  # however many runs were missing: one round trip
                    end = min(n + whence, len(data))
                    if max(0, n) < end:  # a span with bytes of the object in it
                        wanted = range(max(0, n) // 1024, (end - 1) // 1024 + 1)
                        assert all(backend.blocks.has("cam0/blob.mp4", b) for b in wanted)
                    if n < end:
                        wanted_end = end
                elif op == "read":
                    at = want.tell()
                    same_bytes(got.read(n), want.read(n), at)
                else:
                    at, mine, theirs = want.tell(), bytearray(n), bytearray(n)
                    same_bytes(mine[:got.readinto(mine)], theirs[:want.readinto(theirs)], at)
                assert got.tell() == want.tell()
            assert backend.blocks.bytes <= 3 * 1024
        with pytest.raises(ValueError):
            got.read(1)  # closed with its block

    def seek_before_the_start() -> None:
        with backend.open_media("cam0/blob.mp4") as reader, pytest.raises(ValueError, match="negative"):
            reader.seek(-1, io.SEEK_SET)

    try:
        await asyncio.to_thread(same_as_bytesio)
        await asyncio.to_thread(seek_before_the_start)
    finally:
        await backend.close()


def gop_of(data: bytes, offset_us: int) -> tuple[int, int, int]:
    """(the offset of the frame a thumbnail at ``offset_us`` shows, the byte its keyframe starts at, the byte after
    the frame): what its decode reads, from the MP4's index."""
    with av.open(io.BytesIO(data)) as container:  # the entries are FFmpeg's memory: copied before the close
        stream = container.streams.video[0]
        tb = stream.time_base
        entries = [SimpleNamespace(timestamp=e.timestamp, pos=e.pos, size=e.size, is_keyframe=e.is_keyframe)
                   for e in stream.index_entries]
    assert tb is not None and entries
    stamps = tuple(round(e.timestamp * tb * 1_000_000) for e in entries)
    frame = stamps.index(nearest_frame(stamps, offset_us))
    key = max(i for i in range(frame + 1) if entries[i].is_keyframe)
    return stamps[frame], entries[key].pos, entries[frame].pos + entries[frame].size


def blocks_a_thumbnail_reads(data: bytes, offset_us: int) -> tuple[int, set[int]]:
    """(the frame's offset, the blocks a thumbnail miss there needs): block 0 (the head, the first keyframe), the
    last (the moov), and those from the keyframe at or before the frame to the frame's end."""
    frame_us, first, after = gop_of(data, offset_us)
    return frame_us, {0, (len(data) - 1) // BLOCK_BYTES, *range(first // BLOCK_BYTES, (after - 1) // BLOCK_BYTES + 1)}


def bytes_fetched_for(blocks: set[int], size: int) -> int:
    """What the GETs bring for these blocks: the cold open's block 0 and last ``BLOCK_BYTES`` of the object
    (``bytes=-N``: the last block and the end of the one before it), then each other block whole."""
    last = (size - 1) // BLOCK_BYTES
    return 2 * min(BLOCK_BYTES, size) + sum(min(BLOCK_BYTES, size - b * BLOCK_BYTES) for b in blocks - {0, last})


def a_gop_across_two_blocks(data: bytes) -> int:
    """An offset (µs) whose thumbnail decodes frames that start in one block and end in the next (neither the
    first block nor the last, which the open fetches)."""
    last = (len(data) - 1) // BLOCK_BYTES
    for offset_us in range(0, SECONDS * 1_000_000, 100_000):
        _, first, after = gop_of(data, offset_us)
        if 0 < first // BLOCK_BYTES < (after - 1) // BLOCK_BYTES < last:
            return offset_us
    raise AssertionError("no moment of the test segment has its GOP across two blocks; make the test find one")


async def test_a_thumbnail_on_s3_is_the_files_one_and_reads_a_fraction_of_the_object(stored, tmp_path):
    s3, files, names = stored
    (header, data), _ = ten_second_segments()
    name = names[0]
    on_files = ThumbnailCache(tmp_path / "thumbs-files", 10**8)
    on_s3 = ThumbnailCache(tmp_path / "thumbs-s3", 10**8)
    key = tmp_path / "segments" / name  # what names the segment in the thumbnail cache (MediaRequests: ROOT/path)
    shares = []
    for offset_us in (0, 5_300_000, 9_900_000, a_gop_across_two_blocks(data)):
        at = header.start_us + offset_us
        want = await asyncio.to_thread(on_files.get_or_make, files.path(name), header.start_us, at, 320)
        rounds = s3.blocks.rounds
        got, nbytes = await asyncio.to_thread(fetched, s3, partial(
            on_s3.get_or_make, key, header.start_us, at, 320, partial(s3.open_media, name)))
        assert got == want  # the same frame, the same JPEG bytes
        frame_us, blocks = blocks_a_thumbnail_reads(data, offset_us)
        assert got.frame_us == header.start_us + frame_us
        # Exactly those blocks (none for FFmpeg's buffer fill past the frame), in two round trips at most: the head
        # and the moov at once, then the GOP in one GET even across two blocks (read as FFmpeg reads it, 32 KiB at
        # a time, that was one GET after another).
        assert nbytes == bytes_fetched_for(blocks, len(data)), (offset_us, blocks)
        assert s3.blocks.rounds - rounds == (1 if len(blocks) == 2 else 2), offset_us
        shares.append(nbytes / len(data))
    print(f"thumbnail misses of a {len(data)} B 10 s segment read {[f'{s:.0%}' for s in shares]} of it")
    # Under half the object at 0, 5.3 and 9.9 s; the GOP across two blocks needs 4 of the 1.8 MB object's 7.
    assert all(0 < s < 0.5 for s in shares[:3]) and shares[3] < 0.6, shares
    await s3.delete_many([name])  # retention's delete drops the object's blocks
    assert s3.blocks.bytes == 0


async def test_exports_on_s3_are_the_files_ones_and_a_short_range_reads_part_of_the_object(stored, tmp_path):
    s3, files, names = stored
    (first, data), (second, _) = ten_second_segments()
    starts = [first.start_us, second.start_us]

    def export(sources: list, from_us: int, to_us: int) -> bytes:
        out = tmp_path / "clip.mp4"
        export_clip(list(zip(sources, starts, strict=True)), from_us, to_us, out)
        return out.read_bytes()

    short = (first.start_us + 3_200_000, first.start_us + 4_500_000)  # inside the first segment
    across = (first.start_us + 7_500_000, second.start_us + 2_500_000)  # the end of one, the start of the next
    for from_us, to_us in (short, across):
        want = await asyncio.to_thread(export, [files.path(n) for n in names], from_us, to_us)
        got, nbytes = await asyncio.to_thread(fetched, s3, partial(
            export, [partial(s3.open_media, n) for n in names], from_us, to_us))
        assert got == want and len(got) > 10_000
        print(f"export of {(to_us - from_us) / 1e6:.1f} s read {nbytes} B of the {2 * len(data)} B of 2 segments")
        if (from_us, to_us) == short:  # block 0 (the head, the first keyframe), the moov's, the two the GOPs are in
            assert nbytes <= 4 * BLOCK_BYTES < len(data)
    # What MediaRequests does for a range that covers the first segment whole: that one is one GET, in the
    # segment cache; the second is read in ranges. The same clip still.
    whole_then_ranged = [partial(s3.open_local, names[0]), partial(s3.open_media, names[1])]
    want = await asyncio.to_thread(export, [files.path(n) for n in names], first.start_us, across[1])
    assert await asyncio.to_thread(export, whole_then_ranged, first.start_us, across[1]) == want


async def delete_object(server: Seaweed, s3: S3Segments, name: str) -> None:
    """As another store's retention would: straight through the bucket (this store's caches are not told)."""
    async with server.client() as client:
        await client.delete_object(Bucket=BUCKET, Key=s3.key(name))


async def test_an_object_deleted_or_replaced_under_a_reader_is_a_clear_error(stored, s3_env, tmp_path):
    s3, _files, names = stored
    (header, data), (second, _) = ten_second_segments()
    loop = asyncio.get_running_loop()

    def read_past_the_first_block(name: str, meanwhile: Callable[[], object]) -> None:
        with s3.open_media(name) as reader:  # blocks 0 and the last fetched: the object's size and ETag are known
            asyncio.run_coroutine_threadsafe(meanwhile(), loop).result(30)
            reader.seek(len(data) // 2)
            with pytest.raises(SegmentChanged) as first:
                reader.read(1000)
            assert reader.read(10) == b""  # raised once; later reads give nothing, and check() says why
            with pytest.raises(SegmentChanged) as again:
                reader.check()
            assert again.value is first.value
            raise first.value

    s3.blocks.clear()
    with pytest.raises(SegmentChanged, match="was deleted while it was being read") as gone:
        await asyncio.to_thread(read_past_the_first_block, names[0], partial(delete_object, s3_env, s3, names[0]))
    assert s3.key(names[0]) in str(gone.value) and gone.value.retry

    async def replace() -> None:  # deleted, then other bytes under the same name (a resend after retention)
        await delete_object(s3_env, s3, names[1])
        await s3.put(names[1], data, hashlib.sha256(data).hexdigest())

    with pytest.raises(SegmentChanged, match="changed while it was being read"):
        await asyncio.to_thread(read_past_the_first_block, names[1], replace)

    # A thumbnail whose object goes between its open and its decode: the storage's error, nothing cached.
    await s3.put(names[0], data, hashlib.sha256(data).hexdigest())
    s3.blocks.clear()
    thumbs = ThumbnailCache(tmp_path / "thumbs", 10**8)

    def thumbnail_of_a_vanishing_segment() -> None:
        with s3.open_media(names[0]) as reader:
            asyncio.run_coroutine_threadsafe(delete_object(s3_env, s3, names[0]), loop).result(30)
            with pytest.raises(SegmentChanged, match="deleted while it was being read"):  # 5 s: a middle block
                thumbs.get_or_make(tmp_path / "segments" / names[0], header.start_us, header.start_us + 5_000_000,
                                   320, lambda: nullcontext(reader))
        assert len(thumbs) == 0
        # Nothing of that failure is left in PyAV for the next decode on this worker thread.
        made = thumbs.get_or_make(tmp_path / "segments" / names[1], second.start_us, second.start_us + 1_000_000,
                                  320, partial(s3.open_media, names[1]))
        assert made.jpeg[:2] == b"\xff\xd8"

    await asyncio.to_thread(thumbnail_of_a_vanishing_segment)
    # An export of it: ExportError naming the object and what happened. Gone before it is opened: not found.
    with pytest.raises(ExportError, match="cannot read segment for export.*no object"):
        await asyncio.to_thread(export_clip, [(partial(s3.open_media, names[0]), header.start_us)],
                                header.start_us, header.end_us, tmp_path / "clip.mp4")
    with pytest.raises(FileNotFoundError):
        await asyncio.to_thread(lambda: s3.open_media(names[0]).__enter__())


