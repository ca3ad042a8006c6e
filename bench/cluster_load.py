"""The cluster benchmark's load and its physical limit (bench/cluster.py).

- ``generate``: a load generator, run in a process of its own: node connections on ``/ingest``, each with its own
  node token, sending real segments as a node does (``IngestSender``, 1 MiB fragments, the next segment once the
  last is acknowledged), each node rotating over its cameras with start times 10 s apart. Every segment is the same
  real MP4 (the store demuxes it and counts its frames); only the header (camera, start) changes.
- ``disk_probe``: the disk's limit for that work: files of a segment's size written under a temporary name,
  fsynced, renamed, their directory fsynced (what the file backend does per segment), by 1 or more threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.cluster_summary import SEGMENT_S, DiskRep

SEGMENT_US = SEGMENT_S * 1_000_000
ACK_TIMEOUT_S = 60.0


class Flag(Protocol):
    """``multiprocessing.Event`` (what crosses into the generator's process)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Media:
    """One real segment, encoded by the node's code, on disk for the generators to read."""

    path: str
    size: int
    sha256: str
    frames: int
    width: int
    height: int


@dataclass(frozen=True)
class LoadPlan:
    url: str  # ws://HOST:PORT of one store
    tokens: list[tuple[str, str]]  # (node id, node token): one connection each
    cameras_per_node: int
    media: Media
    first_start_us: int
    result_path: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        obj = json.loads(text)
        obj["tokens"] = [tuple(t) for t in obj["tokens"]]
        obj["media"] = Media(**obj["media"])
        return cls(**obj)


@dataclass
class LoadResult:
    acks: list[float]  # time.monotonic() of each ack (CLOCK_MONOTONIC: the same clock in every process)
    latency_ms: list[float]  # the same acks' send start -> ack
    refused: dict[str, int]
    errors: list[str]

    @classmethod
    def read(cls, path: Path) -> LoadResult:
        return cls(**json.loads(path.read_text()))


def make_media(directory: Path) -> Media:
    """A real 1280x720 15 fps 10 s segment (libx264, 1 s GOP, ~2 Mbit/s: ~2.6 MB) made by the node's code."""
    import hashlib

    from bench.store import encode_segment

    data, frames = encode_segment("bench-src", 1280, 720, 15, SEGMENT_S, first_frame=0)
    path = directory / "segment.mp4"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Media(str(path), len(data), hashlib.sha256(data).hexdigest(), frames, 1280, 720)


def generate(plan_json: str, ready: Flag, stop: Flag) -> None:
    """The generator process's entry point: connect every node, set ``ready``, send until ``stop``, write the
    result to ``plan.result_path``."""
    plan = LoadPlan.from_json(plan_json)
    payload = Path(plan.media.path).read_bytes()
    result = asyncio.run(_generate(plan, payload, ready, stop))
    Path(plan.result_path).write_text(json.dumps(asdict(result)))


async def _generate(plan: LoadPlan, payload: bytes, ready: Flag, stop: Flag) -> LoadResult:
    from websockets.asyncio.client import connect

    from shared.security import bearer

    result = LoadResult([], [], {}, [])
    refused: Counter[str] = Counter()

    async def open_link(token: str) -> Any:
        return await connect(plan.url + "/ingest", max_size=2**20, open_timeout=30, write_limit=2**20,
                             additional_headers=bearer(token), close_timeout=5)

    links = [await open_link(token) for _, token in plan.tokens]
    ready.set()
    await asyncio.gather(*(_node(i, node, token, link, open_link, plan, payload, result, refused, stop)
                           for i, ((node, token), link) in enumerate(zip(plan.tokens, links, strict=True))))
    result.refused = dict(refused)
    return result


async def _node(index: int, node: str, token: str, link: Any, open_link: Any, plan: LoadPlan, payload: bytes,
                result: LoadResult, refused: Counter[str], stop: Flag) -> None:
    import websockets

    from shared.protocol.ingest import MAX_FRAGMENT_BYTES, Ack, IngestSender, SegmentHeader, fragments

    media = plan.media
    cameras = [f"{node}c{j:02d}" for j in range(plan.cameras_per_node)]
    sent = 0
    while not stop.is_set():
        try:
            sender = IngestSender()
            while not stop.is_set():
                camera = cameras[sent % len(cameras)]
                # Cameras of a node take turns; each camera's segments follow each other, 10 s apart.
                start = plan.first_start_us + (sent // len(cameras)) * SEGMENT_US + index * 1000
                sent += 1
                header = SegmentHeader(node, camera, start, start + SEGMENT_US, media.frames, media.size,
                                       media.sha256, "h264", media.width, media.height)
                sender.send_segment(header, payload)
                started = time.monotonic()
                for message in sender.data_to_send():
                    if isinstance(message, bytes) and len(message) > MAX_FRAGMENT_BYTES:
                        await link.send(fragments(message))
                    else:
                        await link.send(message)
                reply = sender.receive(await asyncio.wait_for(link.recv(), ACK_TIMEOUT_S))
                done = time.monotonic()
                if isinstance(reply, Ack) and not reply.duplicate:
                    result.acks.append(done)
                    result.latency_ms.append(1000 * (done - started))
                else:
                    refused["duplicate" if isinstance(reply, Ack) else reply.code] += 1
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            result.errors.append(f"{node}: {type(exc).__name__}: {exc}")
            if len(result.errors) > 50:
                return  # the store is gone: the run is reported as failed
            await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):
                link = await open_link(token)
    with contextlib.suppress(Exception):
        await link.close()


# --- the disk's limit ----------------------------------------------------------------------------------------

def disk_probe(directory: Path, data: bytes, seconds: float, writers: int = 1, dirs_per_writer: int = 20) -> DiskRep:
    """Files of ``len(data)`` bytes written durably (temporary name, write, fsync, rename, directory fsync) by
    ``writers`` threads for ``seconds``, each rotating over directories of its own like cameras' hour
    directories; deleted afterwards (not timed)."""
    directory.mkdir(parents=True, exist_ok=True)
    dirs = [[directory / f"w{w}" / f"cam{d:02d}" for d in range(dirs_per_writer)] for w in range(writers)]
    for group in dirs:
        for d in group:
            d.mkdir(parents=True, exist_ok=True)
    os.sync()
    counts = [0] * writers
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(writers + 1)

    def writer(w: int) -> None:
        barrier.wait()
        n = 0
        while time.monotonic() < deadline:
            d = dirs[w][n % dirs_per_writer]
            temp, final = d / f"{n}.mp4.tmp-probe", d / f"{n}.mp4"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            n += 1
        counts[w] = n

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    remove_tree(directory)
    return DiskRep(sum(counts), len(data), elapsed, writers)


def remove_tree(path: Path) -> None:
    """Delete a tree and let the file system settle (freed blocks, journal) before the next measurement."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def first_start_us(hours_back: float = 2.0) -> int:
    """Where the generated footage starts: a little in the past, as a backlog and live footage would be."""
    return (time.time_ns() // 1000 // SEGMENT_US) * SEGMENT_US - int(hours_back * 3600 * 1e6)


def spawn_generators(plans: Sequence[LoadPlan]) -> list[tuple[Any, Any, Any]]:
    """Start one generator process per plan; (process, ready, stop) each."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    started = []
    for plan in plans:
        ready, stop = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=generate, args=(plan.to_json(), ready, stop), daemon=True)
        proc.start()
        started.append((proc, ready, stop))
    return started
