"""``/recordings`` on segments in S3 (a real SeaweedFS, tests/store/seaweed.py): the same sidecar and the same MP4,
byte for byte, as from files, its tables and frames read through the storage's ranged reads."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from types import SimpleNamespace

from store.index import index_path
from store.index.db import Index
from store.playback.routes import Playback
from store.segments import row_path, segment_name
from store.segments.files import FileSegments
from tests.store.playback.test_recordings import record
from tests.store.seaweed import Seaweed
from tests.store.test_segments_s3 import new_backend

T0 = 1_764_165_160_000_000
S = 1_000_000


async def mp4_of(playback: Playback, from_us: int, to_us: int) -> tuple[dict, bytes]:
    clip = await playback.clip("cam0", from_us, to_us)
    return await clip.sidecar(), b"".join([chunk async for chunk in playback.clips.body(clip, 0, clip.total)])


async def test_the_mp4_from_s3_is_the_mp4_from_files(s3_env: Seaweed, tmp_path: Path) -> None:
    files_root = tmp_path / "files"
    # 3 segments, in files and in the files store's index
    headers = await asyncio.to_thread(record, files_root, "cam0", T0, 60)
    s3 = new_backend(s3_env, tmp_path / "s3")
    await s3.start()
    (tmp_path / "s3root").mkdir()
    index = await Index.open(index_path(tmp_path / "s3root"))
    files_index = await Index.open(index_path(files_root))
    try:
        for h in headers:
            name = segment_name(h.camera, h.start_us)
            data = FileSegments(files_root).path(name).read_bytes()
            await s3.put(name, data, hashlib.sha256(data).hexdigest())
            await index.insert_segment(h, row_path(name), h.start_us)
        on_s3 = Playback(index, SimpleNamespace(segments=s3))
        on_files = Playback(files_index, SimpleNamespace(segments=FileSegments(files_root)))
        for from_us, to_us in ((T0, T0 + 6 * S), (T0 + 2_500_000, T0 + 3_500_000)):
            s3.blocks.clear()
            before = s3.blocks.fetched_bytes
            doc, mp4 = await mp4_of(on_s3, from_us, to_us)
            assert s3.blocks.fetched_bytes > before  # read from the bucket, not from somewhere else
            assert (doc, mp4) == await mp4_of(on_files, from_us, to_us)
            assert doc["frames"] == (60 if to_us == T0 + 6 * S else 15)
    finally:
        await index.close()
        await files_index.close()
        await s3.close()

