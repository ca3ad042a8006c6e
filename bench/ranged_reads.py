"""``just bench ranged-reads``: what a thumbnail miss and an export cost on S3 read in ranges (``open_media``,
store/segments/ranged.py) against the whole object (``open_local``), on a SeaweedFS on loopback.

One real segment (default 10 s of 1280x720 at 10 fps, 1 s GOP, as the node writes it: the moov at the end) is PUT
once. Each trial starts cold (the block cache or the segment cache emptied, a new thumbnail cache, so the frame
index is read too) and times one request in a worker thread, as the store makes it: a thumbnail at one of five
moments across the segment, an export of 1.3 s inside it, an export of the whole segment. Bytes are what the GETs
brought (block cache counters; the whole object for ``open_local``); "ranged, no tail" is the reader
without its GET of the last block at open. Prints the medians and their ratios;
docs/cluster.md ("Segments on S3") quotes a run.

Loopback has no round trip and no bandwidth limit to speak of. ``--rtt-ms`` and ``--mbit`` model a remote
endpoint: each GET waits the round trip, then its bytes' time at that rate, GETs at once sharing the rate (a
model of a link, not a measurement of one; the report says so).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from sht.local_servers import running_seaweed
from store.media.export import export_clip
from store.media.source import MediaInput
from store.media.thumbs import ThumbnailCache
from store.segments import segment_name
from store.segments.ranged import RangedReader, RangeReply
from store.segments.s3 import S3Segments
from store.segments.url import S3Location, parse_segments_url

T0 = 1_764_165_160_000_000
MOMENTS_S = (0.0, 2.5, 5.3, 7.7, 9.9)  # where the thumbnails are asked, as a share of a 10 s segment
Open = Callable[[str], AbstractContextManager[MediaInput]]


class ModelledLink(S3Segments):
    """Each GET after ``rtt_s``, its bytes arriving at ``bytes_per_s`` (0: no limit) on one link: GETs at once
    wait their round trips together and share the rate (their transfers take turns)."""

    rtt_s = 0.0
    bytes_per_s = 0.0
    _link: asyncio.Lock | None = None

    async def _delay(self, nbytes: int) -> None:
        await asyncio.sleep(self.rtt_s)
        if self.bytes_per_s:
            self._link = self._link or asyncio.Lock()
            async with self._link:
                await asyncio.sleep(nbytes / self.bytes_per_s)

    async def _get_range(self, name: str, byte_range: str) -> RangeReply:
        reply = await super()._get_range(name, byte_range)
        await self._delay(len(reply.data))
        return reply

    async def _get(self, name: str) -> bytes:
        data = await super()._get(name)
        await self._delay(len(data))
        return data


def make_segment(width: int, height: int, fps: int, seconds: int) -> tuple[int, bytes]:
    src, enc = SyntheticSource(width, height, fps), H264Encoder(width, height, fps, keyframe_interval_s=1.0)
    seg = Segmenter("cam0", segment_seconds=seconds, fps=fps)
    step = 1_000_000 // fps
    units = [u for i in range(seconds * fps + 1) for u in enc.encode(src.read(i), T0 + i * step)] + enc.flush()
    finished = [s for u in units if (s := seg.push(AccessUnit.build(u.capture_us, u.keyframe, u.data)))]
    header, data = build_segment("node0", finished[0], width, height, fps)
    return header.start_us, data


class Trials:
    def __init__(self, backend: S3Segments, size: int, scratch: Path) -> None:
        self.backend, self.size, self.scratch = backend, size, scratch
        self.samples: dict[tuple[str, str], list[tuple[float, int, int]]] = {}  # (what, how) -> (s, bytes, GETs)
        self.n = 0

    def opener(self, how: str) -> Open:
        RangedReader.prefetch_tail = how != "ranged, no tail"
        return self.backend.open_local if how == "whole" else self.backend.open_media

    def cold(self) -> None:
        self.backend.blocks.clear()
        self.backend.cache.clear()

    def measure(self, what: str, how: str, work: Callable[[], object]) -> None:
        blocks, cache = self.backend.blocks, self.backend.cache
        self.cold()
        gets, fetched, whole = blocks.gets, blocks.fetched_bytes, cache.fetches
        began = time.perf_counter()
        work()
        took = time.perf_counter() - began
        nbytes = blocks.fetched_bytes - fetched + (cache.fetches - whole) * self.size
        self.samples.setdefault((what, how), []).append((took, nbytes, blocks.gets - gets + cache.fetches - whole))

    def thumbnail(self, how: str, name: str, start: int, at: int) -> None:
        self.n += 1
        thumbs = ThumbnailCache(self.scratch / f"thumbs{self.n}", 10**8)
        self.measure("thumbnail miss", how, partial(thumbs.get_or_make, self.scratch / "segments" / name, start,
                                                    at, 320, partial(self.opener(how), name)))

    def export(self, what: str, how: str, name: str, start: int, from_us: int, to_us: int) -> None:
        out = self.scratch / "clip.mp4"
        self.measure(what, how, partial(export_clip, [(partial(self.opener(how), name), start)], from_us, to_us, out))


def report(trials: Trials, size: int) -> list[str]:
    lines = [f"{'request':<26}{'read':>16}{'median ms':>11}{'median KiB':>12}{'of object':>11}{'GETs':>6}"]
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for (what, how), samples in trials.samples.items():
        ms = statistics.median(s for s, _, _ in samples) * 1000
        nbytes = statistics.median(b for _, b, _ in samples)
        gets = statistics.median(g for _, _, g in samples)
        medians[(what, how)] = (ms, nbytes)
        lines.append(f"{what:<26}{how:>16}{ms:>11.1f}{nbytes / 1024:>12.0f}{nbytes / size:>11.0%}{gets:>6.0f}")
    for what in dict.fromkeys(w for w, _ in medians):
        w_ms, w_b = medians[(what, "whole")]
        for how in ("ranged", "ranged, no tail"):
            r_ms, r_b = medians[(what, how)]
            lines.append(f"{what}: {how} / whole = {r_b / w_b:.2f} of the bytes, {r_ms / w_ms:.2f} of the time")
    return lines


async def run(server_url: str, scratch: Path, args: argparse.Namespace) -> None:
    width, height = (int(v) for v in args.size.split("x"))
    start, data = await asyncio.to_thread(make_segment, width, height, args.fps, args.seconds)
    location = parse_segments_url(server_url)
    assert isinstance(location, S3Location)
    backend = ModelledLink(location, scratch / "cache")
    backend.rtt_s, backend.bytes_per_s = args.rtt_ms / 1000, args.mbit * 1e6 / 8
    await backend.start()
    try:
        name = segment_name("cam0", start)
        await backend.put(name, data, hashlib.sha256(data).hexdigest())
        trials = Trials(backend, len(data), scratch)
        span = args.seconds * 1_000_000
        inside = (start + span * 32 // 100, start + span * 45 // 100)  # 1.3 s of a 10 s segment
        for k in range(args.trials):
            at = start + round(MOMENTS_S[k % len(MOMENTS_S)] / 10 * span)
            ways = ("ranged", "ranged, no tail", "whole")
            for how in ways[k % 3:] + ways[:k % 3]:  # none always goes first
                await asyncio.to_thread(trials.thumbnail, how, name, start, at)
                await asyncio.to_thread(trials.export, "export inside a segment", how, name, start, *inside)
                await asyncio.to_thread(trials.export, "export of a whole segment", how, name, start, start,
                                        start + span)
        link = (f", a link modelled as {args.rtt_ms:g} ms round trip and {args.mbit:g} Mbit/s"
                if args.rtt_ms or args.mbit else "")
        print(f"{len(data)} B segment ({args.seconds} s {args.size} at {args.fps} fps), {args.trials} trials each, "
              f"SeaweedFS on loopback{link}")
        print("\n".join(report(trials, len(data))))
    finally:
        await backend.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="just bench ranged-reads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the segment (default 1280x720)")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="model a round trip before each GET (ms)")
    parser.add_argument("--mbit", type=float, default=0.0, help="model a link of this rate (Mbit/s; 0: none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sht-ranged-") as tmp, running_seaweed(Path(tmp) / "weed") as server:
        os.environ.update(server.env())
        asyncio.run(run(server.url(prefix="bench"), Path(tmp), args))
    return 0
