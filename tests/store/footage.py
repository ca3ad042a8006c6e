"""A store root with real recorded footage (files in the store layout and their index rows), made without a node.

One real 2 s segment is encoded once and written again at consecutive start times, so a long range (enough for
an export that takes a while) costs one encode. The index rows are those ingest would have written (shapes
included: store/index/shapes.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from functools import lru_cache
from pathlib import Path

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from shared.protocol.ingest import SegmentHeader
from store.index import index_path
from store.index.db import Index
from store.index.shapes import shape_of_bytes
from store.ingest.writer import segment_relpath
from store.playback.segment_shape import SegmentShape

CAMERA = "cam0"
T0 = 1_700_000_000_000_000
SEGMENT_US = 2_000_000


@lru_cache(maxsize=4)
def one_segment(width: int = 320, height: int = 240, fps: int = 10) -> tuple[SegmentHeader, bytes]:
    """A real 2 s segment (1 s GOP) starting at T0."""
    src, enc = SyntheticSource(width, height, fps), H264Encoder(width, height, fps, keyframe_interval_s=1.0)
    seg = Segmenter(CAMERA, segment_seconds=2, fps=fps)
    frame_us = 1_000_000 // fps
    encoded = [u for i in range(2 * fps + 1) for u in enc.encode(src.read(i), T0 + i * frame_us)] + enc.flush()
    finished = [s for u in encoded if (s := seg.push(AccessUnit.build(u.capture_us, u.keyframe, u.data)))]
    return build_segment("node0", finished[0], width, height, fps)


def make_footage(root: Path, segments: int, width: int = 320, height: int = 240,
                 start_us: int = T0) -> list[SegmentHeader]:
    """``segments`` consecutive 2 s segments of CAMERA from ``start_us`` under ``root``, indexed; returns their
    headers. A running store's retention deletes footage older than its --max-age: pass a recent ``start_us``.
    Call it outside a running event loop (it runs its own for the index)."""
    header, data = one_segment(width, height)
    headers, rows = [], []
    for k in range(segments):
        start = start_us + k * SEGMENT_US
        h = dataclasses.replace(header, start_us=start, end_us=start + (header.end_us - header.start_us))
        rel = segment_relpath(CAMERA, start)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        headers.append(h)
        rows.append((h, rel.as_posix()))
    asyncio.run(_index(root, rows, shape_of_bytes(data, "footage")))
    return headers


async def _index(root: Path, rows: list[tuple[SegmentHeader, str]], shape: SegmentShape | None) -> None:
    index = await Index.open(index_path(root))
    try:
        for header, rel in rows:
            await index.insert_segment(header, rel, header.start_us, shape=shape)  # as ingest writes them
    finally:
        await index.close()
