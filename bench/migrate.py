"""``just bench migrate``: how fast ``sht store migrate`` moves a store to PostgreSQL and S3 on this machine.

A store root is made with real 10 s 1280x720 segments (one encoded, written again at consecutive start times of
several cameras, as tests/store/footage.py does) and their index rows, plus motion events; then the real command
moves it into a durable PostgreSQL and a SeaweedFS that this benchmark starts (bench/cluster_servers.py), all on
this machine. Measured: the whole run's wall time, the rate it reports for the PUTs, and the index alone (its rows
only) into a second database; then the same for a store of many one-frame segments, where the cost per row and
per object shows. Prints a table; writes nothing else.

    python3 -m bench migrate [--segments 300] [--small 10000] [--cameras 4] [--parallel 8]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from shared.protocol.ingest import SegmentHeader

REPO = Path(__file__).resolve().parents[1]
SEGMENT_S, WIDTH, HEIGHT, FPS = 10, 1280, 720, 10
EVENTS_PER_CAMERA_HOUR = 20


@lru_cache(maxsize=1)
def one_segment() -> tuple[SegmentHeader, bytes]:
    """A real 10 s 1280x720 segment (1 s GOP), as a node makes it."""
    from node.capture.encode import H264Encoder
    from node.recording.segmenter import Segmenter, build_segment
    from node.sources.synthetic import SyntheticSource
    from shared.fanout import AccessUnit

    source, encoder = SyntheticSource(WIDTH, HEIGHT, FPS), H264Encoder(WIDTH, HEIGHT, FPS, keyframe_interval_s=1.0)
    segmenter = Segmenter("cam0", segment_seconds=SEGMENT_S, fps=FPS)
    frame_us = 1_000_000 // FPS
    units = [u for i in range(SEGMENT_S * FPS + 1) for u in encoder.encode(source.read(i), i * frame_us)]
    finished = [s for u in units + encoder.flush() if (s := segmenter.push(AccessUnit.build(u.capture_us, u.keyframe,
                                                                                             u.data)))]
    return build_segment("node0", finished[0], WIDTH, HEIGHT, FPS)


@lru_cache(maxsize=1)
def tiny_segment() -> tuple[SegmentHeader, bytes]:
    """A real one-frame 64x48 segment (a few kB): what makes the per-row and per-object costs show."""
    from tests.store.real_segments import real_mp4

    data = real_mp4()
    header, _ = one_segment()
    return dataclasses.replace(header, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), frames=1), data


async def make_store(root: Path, segments: int, cameras: int, tiny: bool = False) -> int:
    """``segments`` segments spread over ``cameras`` cameras, ending now, with their rows (as ingest writes them, in
    transactions of 1000) and some events; returns their bytes."""
    from shared.protocol.ingest import EventRecord
    from store.index import coverage_marks, index_path
    from store.index.db import Index
    from store.ingest.events import ingest_event
    from store.ingest.writer import segment_relpath
    from store.maintenance.check import insert_row

    header, data = tiny_segment() if tiny else one_segment()
    per_camera = -(-segments // cameras)
    start = (time.time_ns() // 1000 // 1_000_000 - per_camera * SEGMENT_S) * 1_000_000
    index = await Index.open(index_path(root))
    written = 0
    try:
        for k in range(segments):
            camera, slot = f"cam{k % cameras}", k // cameras
            begin = start + slot * SEGMENT_S * 1_000_000 + k % cameras * 1000
            rel = segment_relpath(camera, begin)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            await insert_row(index.conn, {
                "camera": camera, "node": header.node, "start_us": begin, "end_us": begin + SEGMENT_S * 1_000_000,
                "frames": header.frames, "size_bytes": len(data), "sha256": header.sha256, "codec": "h264",
                "width_px": header.width, "height_px": header.height, "path": rel.as_posix(), "received_us": begin})
            if k % 1000 == 999:
                await index.conn.commit()
            written += len(data)
        await coverage_marks.mark_all(index.conn)
        await index.conn.commit()
        hours = max(1, per_camera * SEGMENT_S // 3600)
        for c in range(cameras):
            for e in range(EVENTS_PER_CAMERA_HOUR * hours):
                at = start + e * 3600 * 1_000_000 // EVENTS_PER_CAMERA_HOUR
                await ingest_event(index.conn, EventRecord("node0", f"cam{c}", at, at + 8_000_000, "motion", 0.5,
                                                          (0.1, 0.1, 0.2, 0.2), at + 1_000_000))
    finally:
        await index.close()
    return written


def migrate(root: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sht", "store", "migrate", "--root", str(root), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=3600)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"sht store migrate failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr}")
    return wall, done.stdout


def main(argv: list[str]) -> int:
    from bench.cluster_servers import postgres, postgres_missing, seaweed, seaweed_missing

    parser = argparse.ArgumentParser(prog="bench migrate")
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--small", type=int, default=10_000, help="a second store of this many tiny segments, for "
                        "the per-row and per-object costs (0: none)")
    args = parser.parse_args(argv)
    missing = postgres_missing() or seaweed_missing()
    if missing:
        print(f"bench migrate: {missing}", file=sys.stderr)
        return 2
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sht-bench-migrate-") as tmp, postgres() as pg, \
            seaweed(Path(tmp) / "seaweed") as s3:
        env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"} | s3.env()
        for name, count, tiny in (("10 s 1280x720", args.segments, False), ("one-frame 64x48", args.small, True)):
            if count <= 0:
                continue
            root = Path(tmp) / name.replace(" ", "-")
            root.mkdir()
            made = time.monotonic()
            size = asyncio.run(make_store(root, count, args.cameras, tiny))
            each = len((tiny_segment() if tiny else one_segment())[1])
            print(f"made a store of {count} {name} segments ({size / 2**20:.0f} MiB, {each / 1024:.0f} kiB each) in "
                  f"{time.monotonic() - made:.1f} s", flush=True)
            both, out = migrate(root, env, "--to-index", pg.create_database(), "--to-segments",
                                s3.url(prefix=root.name), "--parallel", str(args.parallel))
            put = re.search(r"objects PUT \(([\d.]+ \w+), ([\d.]+ \w+)/s\)", out)
            alone, _ = migrate(root, env, "--to-index", pg.create_database())
            rows.append(f"| {count:,} {name} ({each / 1024:.0f} kiB) | both, --parallel {args.parallel} | "
                        f"{size / 2**20:.0f} | {both:.1f} | {size / 2**20 / both:.1f} | {count / both:.0f} | "
                        f"{put.group(2) + '/s' if put else '?'} |")
            rows.append(f"| {count:,} {name} | --to-index only (rows) | - | {alone:.1f} | - | {count / alone:.0f} "
                        "| - |")
    print()
    print("| store | migrate | MiB | wall s | MiB/s (whole run) | segments/s (whole run) | PUT rate (its report) |")
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; PostgreSQL with "
          "fsync on and SeaweedFS on this machine's disk; each wall time includes starting the command (~0.5 s) and "
          "the verification")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
