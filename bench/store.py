"""The store benchmark (issue 3): query latency, thumbnails, export and retention on synthetic 30-day indexes.

``python3 -m bench.store [--quick]`` (``just bench store``):

1. Encodes a few REAL segments with the node's own code (synthetic source → H.264 →
   segmenter → MP4): 1280x720, 15 fps, 10 s, 1 s GOP; plus one small real segment that
   the rows of the oldest day point at (as hard links, one file per row) for the prune.
2. Builds each index itself: the real schema (``store.index.db.Index.open``), then one
   ``executemany`` transaction of segments and events. Rows of all but the oldest day point
   at the few real segments in rotation (the thumbnail cache is keyed by camera and segment
   start, so every row still decodes on a miss); each row carries its file's shape (the
   ``play_*`` columns ingest fills, store/playback/segment_shape.py).
3. Starts a real ``sht store`` subprocess on that root and measures through
   ``shared.query_client.StoreClient`` over loopback: search, timeline, thumbnail, export.
4. Stops the store, links one file per row of the oldest day, and times the retention
   ``sweep`` that expires exactly that day.
5. Prints a table with the issue's targets and replaces the "## Store" section of
   docs/benchmarks.md, leaving the other sections alone (``--quick`` writes nothing
   unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import math
import os
import platform
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.report import cpu_model, replace_section, verdict
from shared.protocol.results import ExportResult, SegmentPage, Timeline
from store.index import index_path

SEGMENT_S = 10
SEGMENT_US = SEGMENT_S * 1_000_000
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
SLOTS_PER_DAY = DAY_US // SEGMENT_US  # 8640
T0_US = int(datetime(2025, 11, 1, tzinfo=UTC).timestamp()) * 1_000_000  # midnight UTC: day 0 starts here
EVENTS_PER_CAMERA_DAY = 20_000 / 6 / 30  # the issue's 20,000 events for 6 cameras over 30 days
SHARED_FILES = 3
SOURCE_DIR = "segments/bench-src/2025-01-01/00"  # a store-layout path, so safe_relpath accepts it
EXPORT_SEGMENTS = 60  # 10 minutes
THUMB_WIDTH = 320
SECTION = "## Store"
LINKS_PER_COPY = 50_000
UNLINK_SAMPLE = 10_000  # real files deleted to measure what an unlink costs when it frees blocks


@dataclass(frozen=True)
class Media:
    """Real segment files, encoded once, hard-linked into each store root."""

    shared: list[tuple[Path, int, str]]  # (file, size, sha256) of the full-size segments rows rotate over
    small: tuple[Path, int, str]  # the small segment behind every oldest-day row (for the prune)
    frames: int  # frames per full segment
    width: int
    height: int
    encode_s: float


@dataclass
class Scale:
    cameras: int
    days: int
    events: int

    @property
    def rows(self) -> int:
        return self.cameras * self.days * SLOTS_PER_DAY

    @property
    def label(self) -> str:
        return f"{self.cameras} cameras"


@dataclass(frozen=True)
class Plan:
    search: int
    timeline: int
    thumb_miss: int
    thumb_hit: int
    exports: int
    warmup: int = 3


FULL_PLAN = Plan(search=300, timeline=300, thumb_miss=150, thumb_hit=100, exports=5)
QUICK_PLAN = Plan(search=40, timeline=40, thumb_miss=20, thumb_hit=10, exports=2, warmup=2)


@dataclass
class Built:
    root: Path
    scale: Scale
    build_s: float
    db_bytes: int
    sync_s: float = 0.0  # flushing the freshly built index to disk, before measuring

    @property
    def cameras(self) -> list[str]:
        return camera_names(self.scale.cameras)

    @property
    def end_us(self) -> int:
        return T0_US + self.scale.days * DAY_US


@dataclass
class Measurements:
    search_ms: list[float] = field(default_factory=list)
    search_items: list[int] = field(default_factory=list)
    timeline_ms: list[float] = field(default_factory=list)
    thumb_miss_ms: list[float] = field(default_factory=list)
    thumb_hit_ms: list[float] = field(default_factory=list)
    export_s: list[float] = field(default_factory=list)
    export_bytes: list[int] = field(default_factory=list)
    export_clip_s: list[float] = field(default_factory=list)
    startup_s: float = 0.0


@dataclass
class PruneResult:
    cameras: int
    files: int
    link_s: float
    usage_load_s: float  # StoreUsage.load: the running store does it once at start-up, `sht store prune` per run
    sweep_s: float  # the rows: out of segments, into garbage (what the sweep itself does)
    collect_s: float  # the files: garbage.collect, which the store runs right after each sweep
    deleted: int
    collected: int
    left_over_files: int


def camera_names(n: int) -> list[str]:
    return [f"cam{i:03d}" for i in range(n)]


def day0_relpath(camera: str, start_us: int) -> str:
    """``store.ingest.writer.segment_relpath`` for a start on day 0, without a datetime per row."""
    hour = (start_us - T0_US) // HOUR_US
    return f"segments/{camera}/2025-11-01/{hour:02d}/{start_us}.mp4"


# --- media -------------------------------------------------------------------------------------

def encode_segment(camera: str, width: int, height: int, fps: int, seconds: int, first_frame: int) -> tuple[bytes, int]:
    """One real segment made by the node's code: synthetic frames → H.264 (1 s GOP) → segmenter → MP4."""
    from node.capture.encode import H264Encoder
    from node.recording.segmenter import Segmenter, build_segment
    from node.sources.synthetic import SyntheticSource
    from shared.fanout import AccessUnit

    src, enc = SyntheticSource(width, height, fps), H264Encoder(width, height, fps, keyframe_interval_s=1.0)
    frame_us = 1_000_000 // fps
    encoded = [u for i in range(seconds * fps)
               for u in enc.encode(src.read(first_frame + i), T0_US + i * frame_us)] + enc.flush()
    seg = Segmenter(camera, segment_seconds=seconds, fps=fps)
    finished = [s for u in encoded if (s := seg.push(AccessUnit.build(u.capture_us, u.keyframe, u.data)))]
    if (last := seg.flush()) is not None:
        finished.append(last)
    assert len(finished) == 1, f"expected one segment, got {len(finished)}"
    header, data = build_segment("bench", finished[0], width, height, fps)
    return data, header.frames


def make_media(directory: Path, width: int = 1280, height: int = 720, fps: int = 15, seconds: int = SEGMENT_S,
               shared: int = SHARED_FILES) -> Media:
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, int, str]] = []
    frames = 0
    for i in range(shared):
        data, frames = encode_segment("bench-src", width, height, fps, seconds, first_frame=i * seconds * fps)
        path = directory / f"{i}.mp4"
        path.write_bytes(data)
        files.append((path, len(data), hashlib.sha256(data).hexdigest()))
    data, _ = encode_segment("bench-src", 160, 120, fps, seconds, first_frame=0)
    small = directory / "small.mp4"
    small.write_bytes(data)
    return Media(files, (small, len(data), hashlib.sha256(data).hexdigest()), frames, width, height,
                 time.monotonic() - started)


# --- the index ---------------------------------------------------------------------------------

def thumbnail_sample(cameras: Sequence[str], days: int, count: int, seed: int = 3) -> list[tuple[str, int]]:
    """(camera, at_us) of the thumbnails ``measure`` asks for, drawn before the index is built (so a benchmark can
    give exactly those segments files or objects of their own): distinct segments after the oldest day, whose rows
    point at the small prune file, and a random moment inside each."""
    rng = random.Random(seed)
    slots = rng.sample(range(SLOTS_PER_DAY, days * SLOTS_PER_DAY), count)
    return [(rng.choice(cameras), T0_US + s * SEGMENT_US + rng.randrange(SEGMENT_US)) for s in slots]


def segment_start(at_us: int) -> int:
    """Start of the benchmark's segment that holds ``at_us``."""
    return T0_US + (at_us - T0_US) // SEGMENT_US * SEGMENT_US


def own_path(camera: str, start_us: int) -> str:
    """The row path the store itself would give this segment (``segments/CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``)."""
    from store.segments import row_path, segment_name

    return row_path(segment_name(camera, start_us))


def media_shapes(media: Media) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """The ``play_*`` column values (store/playback/segment_shape.py ``SHAPE_COLUMNS``) of each shared file and of
    the small one, computed once from each file's own sample table, as ingest computes a row's."""
    from store.playback.segment_shape import shape_of
    from store.playback.segment_tables import read_table

    def values(path: Path) -> tuple[Any, ...]:
        with path.open("rb") as f:
            return shape_of(read_table(f, path.stat().st_size, path.name)).values()

    return [values(path) for path, _, _ in media.shared], values(media.small[0])


def _segment_rows(scale: Scale, media: Media, shared_paths: Sequence[str],
                  own: Collection[tuple[str, int]] = (), shapes: bool = True) -> Iterator[tuple[Any, ...]]:
    from store.playback.segment_shape import SHAPE_COLUMNS

    if shapes:
        shared_shapes, small_shape = media_shapes(media)
    else:  # an index written before schema version 5: playback reads each table once and fills the row
        shared_shapes, small_shape = [(None,) * len(SHAPE_COLUMNS)] * len(media.shared), (None,) * len(SHAPE_COLUMNS)
    shared = [(p, size, sha, shape) for p, (_, size, sha), shape
              in zip(shared_paths, media.shared, shared_shapes, strict=True)]
    own_slots: dict[int, set[str]] = {}
    for camera, start in own:
        own_slots.setdefault((start - T0_US) // SEGMENT_US, set()).add(camera)
    _, small_size, small_sha = media.small
    n_shared = len(shared)
    cameras = [(camera, f"node{c // 2:02d}") for c, camera in enumerate(camera_names(scale.cameras))]
    # Time order, cameras interleaved: the order a running store receives and indexes them in
    # (row ids, and so the table's pages, follow time, as retention deletes them).
    for k in range(scale.days * SLOTS_PER_DAY):
        start = T0_US + k * SEGMENT_US
        own_here = own_slots.get(k, ())
        for camera, node in cameras:
            if k < SLOTS_PER_DAY:  # the oldest day: one file per row, linked before the prune
                path, size, sha, shape = day0_relpath(camera, start), small_size, small_sha, small_shape
            else:
                path, size, sha, shape = shared[k % n_shared]
                if camera in own_here:  # a file (or object) of its own, at the store's name for it
                    path = own_path(camera, start)
            yield (camera, node, start, start + SEGMENT_US, media.frames, size, sha, "h264", media.width,
                   media.height, path, start + SEGMENT_US + 400_000, *shape)


def _event_rows(scale: Scale, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    cameras = camera_names(scale.cameras)
    per_camera = [scale.events // scale.cameras + (1 if i < scale.events % scale.cameras else 0)
                  for i in range(scale.cameras)]
    seconds = scale.days * 86_400
    for c, (camera, n) in enumerate(zip(cameras, per_camera, strict=True)):
        node = f"node{c // 2:02d}"
        for s in sorted(rng.sample(range(seconds - 200), n)):
            start = T0_US + s * 1_000_000 + rng.randrange(1_000_000)
            length = rng.randrange(5_000_000, 180_000_000)
            w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
            # A few locked events after the oldest day: retention loads them and keeps their segments.
            locked = 1 if s >= 86_400 and rng.random() < 0.001 else 0
            yield (camera, node, start, start + length, "motion", round(rng.uniform(0.2, 1.0), 3),
                   round(rng.uniform(0, 1 - w), 3), round(rng.uniform(0, 1 - h), 3), round(w, 3), round(h, 3),
                   start + length // 3, "", locked)


def build_index(root: Path, scale: Scale, media: Media, seed: int = 1,
                own: Collection[tuple[str, int]] = (), shapes: bool = True) -> Built:
    """The real schema through ``Index.open``, then rows in one ``executemany`` transaction.

    ``own``: (camera, segment start) of rows that get a file of their own at the store's name for them (a hard
    link to the shared segment their slot rotates to), instead of pointing at the shared file itself.
    ``shapes``: each row carries its file's shape in its ``play_*`` columns, as ingest writes it; False leaves them
    NULL, as in an index written before schema version 5."""
    from store.index.db import Index
    from store.playback.segment_shape import SHAPE_COLUMNS

    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    src = root / SOURCE_DIR
    src.mkdir(parents=True, exist_ok=True)
    shared_paths = []
    for i, (path, _, _) in enumerate(media.shared):
        os.link(path, src / f"{i}.mp4")
        shared_paths.append(f"{SOURCE_DIR}/{i}.mp4")
    db = index_path(root)

    async def create() -> None:
        index = await Index.open(db)
        await index.close()

    asyncio.run(create())
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # Bulk load without a journal (a benchmark fixture, not the store's durability), then back to WAL.
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -1000000")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO segments (camera, node, start_us, end_us, frames, size_bytes, sha256, codec, width_px, "
            f"height_px, path, received_us, {', '.join(SHAPE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (12 + len(SHAPE_COLUMNS)))})",
            _segment_rows(scale, media, shared_paths, own, shapes))
        conn.executemany(
            "INSERT INTO events (camera, node, start_us, end_us, kind, score, bbox_x, bbox_y, bbox_w, bbox_h, "
            "thumb_us, detail, locked) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _event_rows(scale, random.Random(seed)))
        conn.executemany(
            "INSERT INTO nodes (node, first_seen_us, last_seen_us) VALUES (?, ?, ?)",
            [(f"node{i:02d}", T0_US, T0_US + scale.days * DAY_US) for i in range((scale.cameras + 1) // 2)])
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()

    async def summarise() -> None:
        # The hour summaries a running store keeps (store/maintenance/coverage.py), made by its own code.
        from store.index import coverage_marks
        from store.maintenance import coverage

        index = await Index.open(db)
        try:
            await coverage_marks.mark_all(index.conn)
            await index.conn.commit()
            await coverage.refresh_all(index.conn, T0_US + scale.days * DAY_US)
        finally:
            await index.close()

    asyncio.run(summarise())
    for camera, start in own:
        linked = root / own_path(camera, start)
        linked.parent.mkdir(parents=True, exist_ok=True)
        os.link(media.shared[(start - T0_US) // SEGMENT_US % len(media.shared)][0], linked)
    build_s = time.monotonic() - started
    os.sync()  # or the kernel writes the bulk load back while the latencies are measured
    return Built(root, scale, build_s, db.stat().st_size, time.monotonic() - started - build_s)


# --- the store under test ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def store_process(root: Path, log: Path, timeout_s: float = 180.0, args: Sequence[str] = (),
                  env: dict[str, str] | None = None) -> Iterator[tuple[str, float]]:
    """A real ``sht store`` on ``root`` (no retention limits), as (URL, seconds until it listened); ``args``: more
    flags (``--index``, ``--segments``), ``env``: more environment variables (an S3 endpoint's credentials)."""
    port = free_port()
    cmd = [sys.executable, "-m", "sht", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
           "--max-age", "off", "--min-free", "off", "--log-level", "warning", *args]
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the store exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"the store did not listen within {timeout_s:.0f} s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", time.monotonic() - started
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = await call()
    return (time.perf_counter() - t) * 1000, result


def viewer_token(root: Path) -> str:
    """A viewer token signed with the store's key (created here if the store has none yet)."""
    from store.admin.keys import KeyStore

    token, _ = KeyStore(root).issue("viewer", "bench-store", 86_400)
    return token


def store_client(url: str, token: str | None) -> Any:
    from shared.query_client import StoreClient

    if token is not None and "token" in inspect.signature(StoreClient).parameters:
        return StoreClient(url, open_timeout=30, token=token)
    return StoreClient(url, open_timeout=30)  # a store without authentication


async def measure(url: str, built: Built, plan: Plan, token: str | None = None, seed: int = 2,
                  thumbs: Sequence[tuple[str, int]] | None = None) -> Measurements:
    """Sequential requests on one connection, the way the console asks; warm-up requests are not counted.
    ``thumbs``: the (camera, at_us) of the warm-up and cache-miss thumbnails (default ``thumbnail_sample``)."""
    rng = random.Random(seed)
    if thumbs is None:
        thumbs = thumbnail_sample(built.cameras, built.scale.days, plan.warmup + plan.thumb_miss)
    assert len(thumbs) == plan.warmup + plan.thumb_miss, "a thumbnail per warm-up and per miss"
    m = Measurements()
    cams, days = built.cameras, built.scale.days
    end = built.end_us
    # Thumbnails and exports only where the rows point at the full-size segments (not the oldest day).
    first_shared = SLOTS_PER_DAY
    last_slot = days * SLOTS_PER_DAY
    async with store_client(url, token) as client:
        async def search(cam: str, lo: int) -> dict[str, Any]:
            return await client.call("segments", cameras=[cam], from_us=lo, to_us=lo + HOUR_US, limit=1000)

        async def timeline(cam: str, day: int) -> dict[str, Any]:
            lo = T0_US + day * DAY_US
            return await client.call("timeline", camera=cam, from_us=lo, to_us=lo + DAY_US, bucket="hour")

        async def thumb(cam: str, at: int) -> bytes:
            parts: list[bytes] = []
            await client.call("thumbnail", camera=cam, at_us=at, width=THUMB_WIDTH, on_chunk=parts.append)
            jpeg = b"".join(parts)
            assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
            return jpeg

        async def export(cam: str, lo: int) -> tuple[int, dict[str, Any]]:
            size = 0

            def took(chunk: bytes) -> None:
                nonlocal size
                size += len(chunk)

            result = await client.call("export", camera=cam, from_us=lo, to_us=lo + EXPORT_SEGMENTS * SEGMENT_US,
                                       on_chunk=took)
            return size, result

        for i in range(plan.warmup):
            await search(rng.choice(cams), rng.randrange(T0_US, end - HOUR_US))
            await timeline(rng.choice(cams), rng.randrange(days))
            await thumb(*thumbs[i])
        for _ in range(plan.search):
            ms, r = await _timed(lambda: search(rng.choice(cams), rng.randrange(T0_US, end - HOUR_US)))
            m.search_ms.append(ms)
            m.search_items.append(len(SegmentPage.from_json(r).items))  # read after the clock stops
        for _ in range(plan.timeline):
            ms, r = await _timed(lambda: timeline(rng.choice(cams), rng.randrange(days)))
            day = Timeline.from_json(r)
            assert day.recorded_us == DAY_US and len(day.buckets) == 24, "timeline of a fully recorded day"
            m.timeline_ms.append(ms)
        # Misses: distinct segments (a thumbnail is cached per segment start and frame), random frame inside.
        asked = []
        for cam, at in thumbs[plan.warmup:]:
            ms, _ = await _timed(lambda c=cam, a=at: thumb(c, a))  # type: ignore[misc]
            m.thumb_miss_ms.append(ms)
            asked.append((cam, at))
        for cam, at in (asked * (plan.thumb_hit // max(len(asked), 1) + 1))[: plan.thumb_hit]:
            ms, _ = await _timed(lambda c=cam, a=at: thumb(c, a))  # type: ignore[misc]
            m.thumb_hit_ms.append(ms)
        for _ in range(plan.exports):
            cam = rng.choice(cams)
            lo = T0_US + rng.randrange(first_shared, last_slot - EXPORT_SEGMENTS) * SEGMENT_US
            t = time.perf_counter()
            size, r = await export(cam, lo)
            m.export_s.append(time.perf_counter() - t)
            clip = ExportResult.from_json(r)
            assert clip.segments == EXPORT_SEGMENTS and size == clip.bytes, clip
            m.export_bytes.append(size)
            m.export_clip_s.append((clip.end_us - clip.start_us) / 1e6)
    return m


# --- retention ---------------------------------------------------------------------------------

def link_oldest_day(built: Built, small: Path) -> tuple[int, float]:
    """One hard link per oldest-day row, at the path its row names (the store's layout).

    File systems cap links per inode (ext4: 65,000), so a fresh copy of the file serves every 50,000.
    """
    started = time.monotonic()
    root = str(built.root)
    copies = built.root / "bench-links"
    copies.mkdir(exist_ok=True)
    n = 0
    source = ""
    for camera in built.cameras:
        for hour in range(24):
            os.makedirs(f"{root}/segments/{camera}/2025-11-01/{hour:02d}", exist_ok=True)
        for k in range(SLOTS_PER_DAY):
            if n % LINKS_PER_COPY == 0:
                source = str(copies / f"{n // LINKS_PER_COPY}.mp4")
                shutil.copyfile(small, source)
            os.link(source, f"{root}/{day0_relpath(camera, T0_US + k * SEGMENT_US)}")
            n += 1
    return n, time.monotonic() - started


async def prune_oldest_day(built: Built, files: int, link_s: float) -> PruneResult:
    """Time ``retention.sweep`` with a max-age that expires exactly the oldest day (the store must be stopped),
    then ``garbage.collect``, which deletes the files the sweep listed, as the store does right after."""
    from store.maintenance import garbage, retention

    index = await retention.open_index(index_path(built.root))  # as `sht store prune` and the store do
    try:
        t = time.perf_counter()
        usage = await retention.StoreUsage.load(index)
        usage_s = time.perf_counter() - t
        policy = retention.RetentionPolicy(max_age_us=(built.scale.days - 1) * DAY_US)
        t = time.perf_counter()
        report = await retention.sweep(index, built.root, policy, built.end_us, usage=usage)
        sweep_s = time.perf_counter() - t
        t = time.perf_counter()
        collected = await garbage.collect(index.conn, built.root)
        collect_s = time.perf_counter() - t
    finally:
        await index.close()
    left = sum(len(names) for camera in built.cameras
               for _, _, names in os.walk(built.root / "segments" / camera / "2025-11-01"))
    return PruneResult(built.scale.cameras, files, link_s, usage_s, sweep_s, collect_s, report.deleted,
                       collected.files, left)


def real_unlink_cost(directory: Path, count: int = UNLINK_SAMPLE, size: int = 64 * 1024) -> float:
    """µs per unlink of a real file (its blocks freed), unlike the benchmark's hard links: a sample."""
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    paths = [directory / f"{i}.mp4" for i in range(count)]
    for p in paths:
        p.write_bytes(data)
    os.sync()  # as a segment stored a while ago
    t = time.perf_counter()
    for p in paths:
        os.unlink(p)
    return (time.perf_counter() - t) / count * 1e6


# --- report ------------------------------------------------------------------------------------

@dataclass
class Row:
    scale: str
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_rows(scale: str, name: str, values: list[float], p99_target: float | None, note: str = "") -> list[Row]:
    p50, p99 = pct(values, 50), pct(values, 99)
    target = f"p99 < {p99_target:g} ms" if p99_target is not None else ""
    ok = p99 < p99_target if p99_target is not None else None
    return [Row(scale, f"{name} p50 / p99 (n={len(values)}){note}", f"{p50:.1f} / {p99:.1f} ms", target, ok)]


def rows_for(built: Built, m: Measurements, prune: PruneResult | None, media: Media, query_target_ms: float,
             prune_target: bool) -> list[Row]:
    s = built.scale
    label = s.label
    rows = [
        Row(label, "index", f"{s.rows:,} segments + {s.events:,} events over {s.days} days, "
                            f"{built.db_bytes / 1e6:,.0f} MB; built in {built.build_s:.0f} s"),
        Row(label, "store start-up (process start → listening)", f"{m.startup_s:.1f} s"),
    ]
    items = sorted(set(m.search_items))
    rows += latency_rows(label, "search: `segments`, 1 camera, random 1 h", m.search_ms, query_target_ms,
                         f", {items[0]} items" if len(items) == 1 else f", {items[0]}–{items[-1]} items")
    rows += latency_rows(label, "timeline: 1 camera, random day, hour buckets", m.timeline_ms, query_target_ms,
                         f", {SLOTS_PER_DAY:,} segments each")
    rows += latency_rows(label, f"thumbnail, cache miss ({THUMB_WIDTH} px from {media.width}x{media.height})",
                         m.thumb_miss_ms, 50.0)
    rows += latency_rows(label, "thumbnail, cache hit", m.thumb_hit_ms, None)
    clip = sum(m.export_clip_s)
    wall = sum(m.export_s)
    speed, slowest = clip / wall, min(c / w for c, w in zip(m.export_clip_s, m.export_s, strict=True))
    rows.append(Row(label, f"export: 10 min (60 segments) of 1 camera, n={len(m.export_s)}",
                    f"{speed:.0f}x real time (slowest {slowest:.0f}x), {sum(m.export_bytes) / wall / 1e6:.0f} MB/s, "
                    f"{sum(m.export_bytes) / len(m.export_bytes) / 1e6:.0f} MB per clip", "> 50x", slowest > 50))
    if prune is not None:
        target = "< 5 s" if prune_target else ""
        ok = prune.sweep_s < 5.0 if prune_target else None
        rows.append(Row(label, f"prune one day: the sweep takes {prune.deleted:,} rows out of the index "
                               "(into `garbage`)", f"{prune.sweep_s:.2f} s", target,
                        ok and prune.deleted == prune.files))
        rows.append(Row(label, f"  then the collector deletes their {prune.collected:,} files (hard links)",
                        f"{prune.collect_s:.2f} s ({prune.collect_s / max(prune.collected, 1) * 1e6:.1f} µs per file)",
                        "", prune.collected == prune.files and prune.left_over_files == 0))
        rows.append(Row(label, "  + usage totals (`sht store prune` only; the running store loads them once)",
                        f"{prune.usage_load_s:.2f} s"))
    return rows


def print_table(rows: list[Row], title: str) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log or a pipe: no wrapping of the long metric names
    table = Table(title=title)
    for col in ("scale", "metric", "measured", "target", "result"):
        table.add_column(col)
    for r in rows:
        style = "" if r.ok is None else ("green" if r.ok else "red")
        table.add_row(r.scale, r.metric, r.value, r.target, verdict(r.ok), style=style)
    console.print(table)


def machine_info(load_at_start: tuple[float, float, float]) -> dict[str, str]:
    model = cpu_model()
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": str(os.cpu_count()), "cpu": model,
            "python": platform.python_version(), "SQLite": sqlite3.sqlite_version,
            "load average (1/5/15 min) at start": " / ".join(f"{x:.2f}" for x in load_at_start)}


def findings(results: Sequence[tuple[Scale, Measurements, PruneResult]], unlink_us: float | None = None) -> list[str]:
    """What the numbers say about where the time goes (the breakdowns come from this run)."""
    out = []
    for scale, m, _ in results[:1]:
        out.append(
            f"Timeline at {scale.cameras} cameras: p50 {pct(m.timeline_ms, 50):.1f} ms, p99 "
            f"{pct(m.timeline_ms, 99):.1f} ms. A camera-day is {SLOTS_PER_DAY:,} segments but 24 hour summaries "
            "(`coverage_hours`, docs/storage.md R5): whole hours come from those, and only the partial hours at the "
            "ends of a range and hours changed since their summary are read segment by segment. Reading all "
            f"{SLOTS_PER_DAY:,} rows through aiosqlite and bucketing them in Python, as before, took 8-12 ms p50 on "
            "this machine. The summaries are built by the store's own code when the index is built (part of the "
            "build time above), as a running store keeps them.")
    for scale, _, prune in results[-1:]:
        out.append(
            f"Prune at {scale.cameras} cameras: the sweep takes {prune.deleted:,} rows out of the index in "
            f"{prune.sweep_s:.1f} s ({prune.sweep_s / max(prune.deleted, 1) * 1e6:.1f} µs per row: read in "
            "(start_us, id) order, checked against each camera's limit and the locked events, and deleted "
            "10,000 rows per transaction, which also notes their ranges in `garbage`). The files go afterwards: "
            f"the store runs the collector right after each sweep, and it deleted these {prune.collected:,} hard "
            f"links in {prune.collect_s:.1f} s. "
            "Until a file is deleted its bytes count as free space to come, so a low-space sweep does not delete "
            "more than it needs; a crash in between leaves garbage rows that the next start finishes (docs/storage.md)."
            + (" Under the 5 s target." if prune.sweep_s < 5.0 else " Over the 5 s target."))
    if unlink_us is not None:
        files = results[-1][2].files if results else 0
        out.append(
            f"Real files cost more to delete than the hard links above: on this machine's file system an unlink "
            f"that frees a file's blocks took {unlink_us:.0f} µs (sample of {UNLINK_SAMPLE:,} files of 64 KB), so a "
            f"day of {files:,} real segment files would take about {files * unlink_us / 1e6:.0f} s of the "
            "collector's time — in the background, after the sweep, which is why the two are separate.")
    out.append(
        "Store changes made with this benchmark, later: hour summaries for timelines; retention's rows moved to "
        "a `garbage` table, one row per camera-hour of deleted segments, with the files deleted afterwards by a "
        "collector; rows inserted by the benchmark in time order across cameras, as a running store receives "
        "them (they were camera by camera, which spread every retention batch over the whole table).")
    out.append(
        "Store changes made with this benchmark, first: an index on events (end_us - start_us), since the longest "
        "event bounds every event range query and its MAX was a full scan of the events table per timeline "
        "request; the timeline's loop rewritten as one pass with buckets in lists (a camera-day timeline went "
        "from 17 to 8 ms p50 in a 6-camera smoke run); `unlink_segments` works on plain strings for the store's "
        "own file names (deleting 100,000 already-missing files, i.e. its overhead alone, went from about 10 to "
        "2 µs per file).")
    return out


def markdown_section(rows: list[Row], info: dict[str, str], media: Media, scales: list[Scale],
                     notes: list[str], quick: bool, found: Sequence[str] = ()) -> str:
    lines = [
        "Generated by `just bench store` (`python3 -m bench.store"
        + (" --quick`; a smoke run, not the reference numbers)" if quick else "`)") + "; rerun it to refresh "
        "this section. The other sections of this page come from the other benchmarks.", "",
        "### What is measured", "",
        f"- **Indexes** built by the benchmark: {' and '.join(f'{s.cameras} cameras' for s in scales)}, "
        f"{scales[0].days} days of {SEGMENT_S} s segments each ({SLOTS_PER_DAY:,} per camera-day), and "
        f"{EVENTS_PER_CAMERA_DAY:.1f} motion events per camera-day (the issue's 20,000 for 6 cameras over 30 days, "
        "scaled by cameras), in the real schema (`store.index.db.Index.open`), with the timeline's hour summaries made "
        "by the store's code.",
        f"- **Footage**: {len(media.shared)} real {media.width}x{media.height} {media.frames // SEGMENT_S} fps "
        f"{SEGMENT_S} s segments ({', '.join(f'{size / 1e6:.2f} MB' for _, size, _ in media.shared)}) made by "
        "the node's code (synthetic source → libx264 1 s GOP → segmenter → MP4); rows rotate over them. The thumbnail "
        "cache is keyed by camera and segment start, so each miss decodes. Rows of the oldest day each have their "
        "own file (a hard link to one small real segment) so the prune deletes one file per row.",
        "- **Wire path**: a real `sht store` process (`--max-age off --min-free off`) and `StoreClient` over "
        "loopback, one request at a time on one connection; latency is request sent → final reply parsed, "
        "including the JSON or the JPEG bytes. A few warm-up requests are not counted. The index and the "
        "segment files are in the page cache (the machine has the RAM for it), as on a store that is in use.",
        "- **Thumbnail miss**: a random moment in a segment not asked for before (decode from the keyframe "
        "before it, scale, JPEG, write the cache); **hit**: the same moments asked again.",
        f"- **Export**: {EXPORT_SEGMENTS} segments (10 min) of one camera, remuxed and streamed to the client; "
        "× real time is clip seconds / wall seconds.",
        "- **Prune**: after the store stops, `store.maintenance.retention.sweep` with a max-age that expires "
        "exactly the oldest day (all cameras), timed end to end: it moves the rows to the `garbage` table; then "
        "`store.maintenance.garbage.collect`, which deletes their files, timed on its own (the running store runs "
        "it right after each sweep; `sht store prune` before it exits). The running store's sweeps reuse its "
        "running usage totals; `sht store prune` computes them first (a full-table `SUM`, shown separately).",
        *[f"- {n}" for n in notes], "",
        "### Machine", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
        "### Results", "",
        "| scale | metric | measured | target | result |", "|---|---|---|---|---|",
        *[f"| {r.scale} | {r.metric} | {r.value} | {r.target} | {verdict(r.ok)} |" for r in rows], "",
        "Targets (issue 3): search and timeline p99 < 10 ms at 6 cameras and < 50 ms at 100 cameras; thumbnail "
        "p99 < 50 ms; export > 50× real time; prune of a day at 100 cameras < 5 s.", "",
        *(["### Findings", "", *[f"- {f}" for f in found], ""] if found else []),
    ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------

def run_scale(tmp: Path, scale: Scale, media: Media, plan: Plan, query_target_ms: float, prune_target: bool,
              console: Console) -> tuple[list[Row], Measurements, PruneResult]:
    root = tmp / f"store-{scale.cameras}"
    console.print(f"[bold]{scale.label}[/bold]: building {scale.rows:,} segment rows and {scale.events:,} events…")
    built = build_index(root, scale, media)
    console.print(f"  built in {built.build_s:.0f} s ({built.db_bytes / 1e6:,.0f} MB), flushed to disk in "
                  f"{built.sync_s:.0f} s; starting the store…")
    with store_process(root, tmp / f"store-{scale.cameras}.log") as (url, startup_s):
        console.print(f"  store listening after {startup_s:.1f} s; measuring…")
        m = asyncio.run(measure(url, built, plan, viewer_token(root)))
        m.startup_s = startup_s
    console.print(f"  linking one file per row of the oldest day ({scale.cameras * SLOTS_PER_DAY:,})…")
    files, link_s = link_oldest_day(built, media.small[0])
    console.print(f"  linked in {link_s:.1f} s; pruning…")
    prune = asyncio.run(prune_oldest_day(built, files, link_s))
    rows = rows_for(built, m, prune, media, query_target_ms, prune_target)
    shutil.rmtree(root, ignore_errors=True)
    return rows, m, prune


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.store", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 days, 6 and 20 cameras, few requests; writes nothing unless --output")
    p.add_argument("--days", type=int, help="days of footage per index (default 30; 2 with --quick)")
    p.add_argument("--output", help="page whose '## Store' section is replaced (default docs/benchmarks.md; "
                                    "none with --quick)")
    p.add_argument("--tmp", help="directory for the temporary stores (default: the system's temp dir)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    console = Console(stderr=True)
    days = args.days or (2 if args.quick else 30)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    counts = (6, 20) if args.quick else (6, 100)
    scales = [Scale(n, days, round(EVENTS_PER_CAMERA_DAY * n * days)) for n in counts]
    output = Path(args.output) if args.output else (None if args.quick else Path("docs/benchmarks.md"))
    started = time.monotonic()
    notes: list[str] = []
    if days == 30 and not args.quick:
        notes.append(f"The issue's \"≈ 155,000 rows\" and \"≈ 2.6 M rows\" are what 30 days of 100 s segments (or "
                     f"3 days of 10 s ones) would give; 30 days of 10 s segments is {SLOTS_PER_DAY * 30:,} rows per "
                     f"camera, so these indexes are 10x larger than those figures: {scales[0].rows:,} and "
                     f"{scales[1].rows:,} rows. A day of one camera is {SLOTS_PER_DAY:,} segments either way.")
    rows: list[Row] = []
    results: list[tuple[Scale, Measurements, PruneResult]] = []
    with tempfile.TemporaryDirectory(prefix="sht-bench-store-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        console.print("encoding the real segments…")
        media = make_media(tmp / "media")
        console.print(f"  {len(media.shared)} segments of {media.width}x{media.height} in {media.encode_s:.1f} s")
        for scale, target_ms, prune_target in zip(scales, (10.0, 50.0), (False, True), strict=True):
            scale_rows, m, prune = run_scale(tmp, scale, media, plan, target_ms, prune_target, console)
            rows += scale_rows
            results.append((scale, m, prune))
        console.print(f"deleting {UNLINK_SAMPLE:,} real files, for what an unlink costs…")
        unlink_us = real_unlink_cost(tmp / "unlink-sample", UNLINK_SAMPLE if not args.quick else 1000)
        rows.append(Row("file system", "unlink of a real 64 KB file (its blocks freed), mean",
                        f"{unlink_us:.0f} µs"))
    title = "SHT CCTV store benchmark" + (" (--quick: smoke run, 20 cameras not 100)" if args.quick else "")
    print_table(rows, title)
    console.print(f"total {time.monotonic() - started:.0f} s")
    if output is not None:
        body = markdown_section(rows, machine_info(load), media, scales, notes, args.quick,
                                findings(results, unlink_us))
        replace_section(output, SECTION, body)
        console.print(f"wrote the '{SECTION}' section of {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
