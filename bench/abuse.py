"""The abuse benchmark (issue 14): every attack of the issue's table against a real store, a node recording.

``python3 -m bench abuse [--seconds S] [--rows 1,7] [--output PATH] [--quick]`` (``just bench abuse``):

1. Starts ``sht store`` (its own root, authentication on) and ``sht node`` recording two
   synthetic cameras into it, as subprocesses on loopback, and lets footage build up.
2. For each row, while the attack runs (at most ``--seconds``), samples the store's RSS
   (psutil, every 50 ms), the size of ``ROOT/cache`` (thumbnails, exports), and ``GET /health``
   latency (every 100 ms); watches the node's ``/health`` (upload link errors, ack timeouts,
   backlog age) and afterwards compares the store's ingest counters and index with what the
   node uploaded: acks delayed (backlog age), lost or duplicated segments.
3. Records what the attacker got back: the first error code and message, or the close code.
4. Prints a table and replaces the "## Abuse" section of docs/benchmarks.md (``--quick``
   writes nothing unless ``--output`` is given).

A store the attack kills or bloats past ``SAFETY_RSS_BYTES`` is stopped and restarted on the
same root for the next row (the row says so), so an unfixed row cannot take the machine down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.processes import spawn_sht, stop_in_order
from bench.report import cpu_model, replace_section, verdict

SECTION = "## Abuse"
SAFETY_RSS_BYTES = 3 * 1024**3
TARGET_RSS_MIB = 400
TARGET_TEMP_MIB = 1024
TARGET_HEALTH_P99_MS = 100.0
MIB = 1024 * 1024
CAMERAS = ("c0", "c1")
NODE_ID = "abuse-node"


# --- the system under attack -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@dataclass(frozen=True)
class Target:
    """Where the attacks aim (picklable: each attack runs in its own process, see ``run_row``)."""

    store_port: int
    node_port: int
    root: Path
    tokens: dict[str, str]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.store_port}"


@dataclass
class System:
    """A store and a node recording into it, as users run them."""

    tmp: Path
    store_port: int = field(default_factory=free_port)
    node_port: int = field(default_factory=free_port)
    store: subprocess.Popen | None = None
    node: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    @property
    def root(self) -> Path:
        return self.tmp / "store"

    @property
    def target(self) -> Target:
        return Target(self.store_port, self.node_port, self.root, self.tokens)

    def start(self) -> None:
        from store.admin.keys import KeyStore

        keys = KeyStore(self.root)
        self.tokens = {role: keys.issue(role, subject, 3 * 3600)[0]
                       for role, subject in (("node", NODE_ID), ("viewer", "abuser"), ("admin", "abuser-admin"))}
        self.start_store()
        cams = [a for cam in CAMERAS for a in ("--camera", f"{cam}=synthetic")]
        self.node = self._spawn("node", "node", "--id", NODE_ID, "--host", "127.0.0.1", "--port",
                                str(self.node_port), "--store", self.target.ws, "--spool", str(self.tmp / "spool"),
                                "--segment-seconds", "2", "--size", "320x240", "--fps", "10", *cams,
                                token=self.tokens["node"])
        _wait_health(f"http://127.0.0.1:{self.node_port}/health", self.node)

    def start_store(self) -> None:
        self.store = self._spawn("store", "store", "--root", str(self.root), "--host", "127.0.0.1",
                                 "--port", str(self.store_port))
        _wait_health(self.target.http + "/health", self.store)

    def ensure_store(self) -> bool:
        """Restart the store if an attack killed it (or the safety cap did); True if it had to."""
        assert self.store is not None
        if self.store.poll() is None:
            return False
        self.restarts += 1
        self.start_store()
        return True

    def kill_store(self) -> None:
        if self.store is not None and self.store.poll() is None:
            self.store.kill()
            self.store.wait()

    def node_health(self) -> dict:
        return get_json(f"http://127.0.0.1:{self.node_port}/health")

    def stop(self) -> None:
        stop_in_order((self.node, self.store))  # the node first, so it uploads what it holds

    def _spawn(self, name: str, *args: str, token: str | None = None) -> subprocess.Popen:
        return spawn_sht(self.tmp / f"{name}.log", *args, token=token)


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            get_json(url, 1.0)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


# --- measuring while an attack runs --------------------------------------------------------------------

@dataclass
class Samples:
    rss_peak: int = 0
    temp_peak: int = 0
    health_ms: list[float] = field(default_factory=list)
    health_failures: int = 0
    killed_at_cap: bool = False
    node_errors: list[str] = field(default_factory=list)
    backlog_age_max_s: float = 0.0


class Monitor:
    """Samples the store and the node from threads, so an attack that blocks the bench's loop cannot hide."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.samples = Samples()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._rss, self._temp, self._health,
                                                                           self._node)]

    def __enter__(self) -> Samples:
        for t in self._threads:
            t.start()
        return self.samples

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _rss(self) -> None:
        assert self.system.store is not None
        try:
            proc = psutil.Process(self.system.store.pid)
            while not self._stop.is_set():
                rss = proc.memory_info().rss
                self.samples.rss_peak = max(self.samples.rss_peak, rss)
                if rss > SAFETY_RSS_BYTES:
                    self.samples.killed_at_cap = True
                    self.system.kill_store()
                    return
                self._stop.wait(0.05)
        except psutil.Error:
            return

    def _temp(self) -> None:
        while not self._stop.is_set():
            self.samples.temp_peak = max(self.samples.temp_peak, dir_bytes(self.system.root / "cache"))
            self._stop.wait(0.25)

    def _health(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                get_json(self.system.target.http + "/health", timeout=5.0)
                self.samples.health_ms.append((time.perf_counter() - started) * 1000)
            except OSError:
                self.samples.health_failures += 1
                self.samples.health_ms.append(5000.0)
            self._stop.wait(0.1)

    def _node(self) -> None:
        while not self._stop.is_set():
            try:
                health = self.system.node_health()
            except OSError as exc:
                self.samples.node_errors.append(f"node /health: {exc}")
            else:
                error = (health.get("store") or {}).get("last_error")
                if error and error not in self.samples.node_errors:
                    self.samples.node_errors.append(error)
                age = (health.get("spool") or {}).get("oldest_age_s") or 0.0
                self.samples.backlog_age_max_s = max(self.samples.backlog_age_max_s, float(age))
            self._stop.wait(0.5)


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


# --- the attacks ------------------------------------------------------------------------------------------

@dataclass
class Attack:
    row: int
    what: str
    run: Callable[[Target, float], Awaitable[str]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _describe_reply(text: str | bytes) -> str:
    if isinstance(text, bytes):
        return f"binary reply, {len(text)} bytes"
    try:
        obj = json.loads(text)
    except ValueError:
        return f"non-JSON reply {text[:80]!r}"
    error = obj.get("error") if isinstance(obj.get("error"), dict) else (obj if obj.get("type") == "error" else None)
    if error is not None:
        message = str(error.get("message"))
        return f"`{error.get('code')}`: {message[:110] + '…' if len(message) > 110 else message}"
    if "result" in obj:
        return f"a result ({len(text):,} bytes)"
    return f"`{obj.get('type', '?')}` {str(obj)[:100]}"


def _closed(exc: websockets.ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "connection dropped, no close frame"
    reason = f" {exc.rcvd.reason[:120]!r}" if exc.rcvd.reason else ""
    return f"closed {exc.rcvd.code}{reason}"


async def _first_reply(ws: ClientConnection, wait_s: float) -> str:
    try:
        return _describe_reply(await asyncio.wait_for(ws.recv(), wait_s))
    except TimeoutError:
        return f"no reply in {wait_s:.0f} s"
    except websockets.ConnectionClosed as exc:
        return _closed(exc)


async def _answer(ws: ClientConnection, rid: int, wait_s: float) -> str:
    """The final reply (result or error) to request ``rid``, skipping its binary chunks and progress."""
    try:
        async with asyncio.timeout(wait_s):
            while True:
                message = await ws.recv()
                if isinstance(message, str):
                    obj = json.loads(message)
                    if obj.get("id") in (rid, None) and ("result" in obj or "error" in obj):
                        return _describe_reply(message)
    except TimeoutError:
        return f"no reply in {wait_s:.0f} s"
    except websockets.ConnectionClosed as exc:
        return _closed(exc)


async def _api(system: Target, token: str = "viewer", max_size: int | None = 64 * MIB) -> ClientConnection:
    return await connect(system.ws + "/api", additional_headers=_bearer(system.tokens[token]), max_size=max_size,
                         open_timeout=10, close_timeout=2, compression=None)


def _request(rid: int, method: str, **params: object) -> str:
    return json.dumps({"id": rid, "method": method, "params": params})


def _now_us() -> int:
    return time.time_ns() // 1000


async def row1_timeline(system: Target, seconds: float) -> str:
    async with await _api(system) as ws:
        await ws.send(_request(1, "timeline", camera=CAMERAS[0], from_us=0, to_us=_now_us(), bucket="minute"))
        return await _first_reply(ws, seconds)


async def row2_abandoned_exports(system: Target, seconds: float) -> str:
    day = 86_400_000_000
    for i in range(5):
        ws = await _api(system)
        await ws.send(_request(1, "export", camera=CAMERAS[i % 2], from_us=_now_us() - day, to_us=_now_us()))
        await asyncio.sleep(random.uniform(0.05, 0.25))
        ws.transport.abort()  # gone without a goodbye
    await asyncio.sleep(min(seconds, 5.0))
    left = dir_bytes(system.root / "cache" / "exports")
    files = sum(1 for _ in (system.root / "cache" / "exports").rglob("*")) \
        if (system.root / "cache" / "exports").exists() else 0
    return f"(gone) 5 s later ROOT/cache/exports holds {files} files, {left / MIB:.1f} MiB"


async def row3_thumbnails(system: Target, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    results, errors = [0], []

    async def one_connection() -> None:
        async with await _api(system) as ws:
            rid = 0
            while time.monotonic() < deadline:
                rid += 1
                at = _now_us() - random.randint(1, 60) * 1_000_000
                await ws.send(_request(rid, "thumbnail", camera=random.choice(CAMERAS), at_us=at,
                                       width=random.randint(3000, 3840)))
                reply = await _answer(ws, rid, max(1.0, deadline - time.monotonic() + 5))
                if reply.startswith("a result"):
                    results[0] += 1
                else:
                    errors.append(reply)

    await asyncio.gather(*(one_connection() for _ in range(4)))
    return f"{results[0]} thumbnails, {len(errors)} refusals" + (f" (first: {errors[0]})" if errors else "")


async def row4_exports_unread(system: Target, seconds: float) -> str:
    hour = 3_600_000_000
    async with await _api(system) as ws:
        for rid in range(1, 31):
            end = _now_us() - rid * 1000
            await ws.send(_request(rid, "export", camera=CAMERAS[rid % 2], from_us=end - 24 * hour, to_us=end))
        await asyncio.sleep(seconds)  # never reading the replies
        return await _first_reply(ws, 5.0)


async def row5_deep_json(system: Target, seconds: float) -> str:
    depth = 30_000
    async with await _api(system) as ws:
        await ws.send('{"id": 1, "method": "fleet", "params": {"x": ' + "[" * depth + "]" * depth + "}}")
        return await _first_reply(ws, seconds)


def _segment_far_future() -> bytes:
    from node.capture.encode import H264Encoder
    from node.recording.segmenter import FinishedSegment, build_segment
    from node.sources.synthetic import SyntheticSource
    from shared.fanout import AccessUnit
    from shared.protocol.ingest import encode_segment

    width, height, fps = 64, 48, 10
    source, encoder = SyntheticSource(width, height, fps), H264Encoder(width, height, fps)
    encoded = [u for i in range(2) for u in encoder.encode(source.read(i), i * 100_000)] + encoder.flush()
    units = [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded]
    header, data = build_segment(NODE_ID, FinishedSegment("c9", tuple(units), 100_000), width, height, fps)
    header = dataclasses.replace(header, start_us=2**62, end_us=2**62 + 200_000)
    return encode_segment(header, data)


async def row6_far_future_segment(system: Target, seconds: float) -> str:
    message = _segment_far_future()
    async with connect(system.ws + "/ingest", additional_headers=_bearer(system.tokens["node"]),
                       open_timeout=10, close_timeout=2) as ws:
        await ws.send(message)
        return await _first_reply(ws, seconds)


async def row7_ingest_flood(system: Target, seconds: float, attackers: int = 4) -> str:
    """The issue's row: 256 MiB zero-filled messages with a node token, two as one frame, two in 1 MiB frames."""
    size = 256 * MIB
    zeros = bytes(MIB)

    async def attacker(i: int) -> str:
        kind = "1 frame" if i % 2 == 0 else "1 MiB frames"
        try:
            ws = await connect(system.ws + "/ingest", additional_headers=_bearer(system.tokens["node"]),
                               max_size=MIB, open_timeout=10, close_timeout=2, compression=None)
        except (OSError, websockets.WebSocketException) as exc:
            return f"{kind}: {type(exc).__name__}: {exc}"
        message: bytes | list[bytes] = bytes(size) if i % 2 == 0 else [zeros] * (size // MIB)
        sending = asyncio.create_task(ws.send(message))
        try:
            reply = await _first_reply(ws, seconds)
            if reply.startswith("`"):  # a refusal: the close that follows says the rest was not read
                reply += "; then " + " ".join((await _first_reply(ws, 5.0)).split()[:2])
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await sending
            if not ws.transport.is_closing():
                ws.transport.abort()  # not close(): a send cancelled mid-message leaves nothing to close cleanly
        return f"{kind}: {reply}"

    replies = await asyncio.gather(*(attacker(i) for i in range(attackers)))
    return " · ".join(sorted(set(replies)))


async def row8_fragment_in_path(system: Target, seconds: float) -> str:
    """A raw handshake: WebSocket clients refuse to send a target with a fragment, an attacker need not."""

    async def status(port: int) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"GET /live/c0#frag HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {system.tokens['viewer']}\r\n\r\n"
                      ).encode())
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
        parts = line.decode(errors="replace").split()
        return parts[1] if len(parts) > 1 else "no answer"

    store, node = await status(system.store_port), await status(system.node_port)
    return f"store relay {store}, node {node}" + (" (consistent)" if store == node else " (INCONSISTENT)")


ATTACKS = [
    Attack(1, "`timeline`, `bucket: minute`, from 0 to now", row1_timeline),
    Attack(2, "five 24 h `export`s, each client gone 50–250 ms after asking", row2_abandoned_exports),
    Attack(3, "thumbnails at random moments, widths 3000–3840, 4 connections", row3_thumbnails),
    Attack(4, "30 `export`s at once on one connection, replies never read", row4_exports_unread),
    Attack(5, "a JSON request nested 30,000 deep", row5_deep_json),
    Attack(6, "an ingest header with `start_us = 2^62` and a valid MP4", row6_far_future_segment),
    Attack(7, "four concurrent 256 MiB zero-filled ingest messages (node token)", row7_ingest_flood),
    Attack(8, "`/live/c0#frag` on the store relay and the node", row8_fragment_in_path),
]


# --- one row, measured -------------------------------------------------------------------------------------

@dataclass
class RowResult:
    row: int
    what: str
    rss_peak_mib: float
    temp_peak_mib: float
    health_p99_ms: float
    health_failures: int
    ack_delay_max_s: float
    ingest_timeouts: int
    link_errors: int
    lost: int
    duplicates: int
    attacker_got: str
    store_restarted: bool = False
    seconds: float = 0.0
    stored: int = 0  # the node's segments indexed from the row's start until its backlog drained

    @property
    def ok(self) -> bool:
        return (self.rss_peak_mib <= TARGET_RSS_MIB and self.temp_peak_mib <= TARGET_TEMP_MIB
                and self.health_p99_ms <= TARGET_HEALTH_P99_MS and self.ingest_timeouts == 0 and self.lost == 0
                and self.duplicates == 0 and not self.store_restarted)


def _store_ingest(system: System) -> dict:
    try:
        return get_json(system.target.http + "/health").get("ingest", {})
    except OSError:
        return {}


def _index_rows(system: System) -> int:
    """Segments of the node's cameras in the store's index."""
    import sqlite3

    from store.index import index_path

    with contextlib.suppress(sqlite3.Error), \
            contextlib.closing(sqlite3.connect(f"file:{index_path(system.root)}?mode=ro", uri=True)) as conn:
        marks = ",".join("?" * len(CAMERAS))
        (rows,) = conn.execute(f"SELECT COUNT(*) FROM segments WHERE camera IN ({marks})", CAMERAS).fetchone()
        return int(rows)
    return -1


def _node_counts(system: System) -> tuple[int, int, int]:
    """(uploaded, refused, lost segments) from the node's /health."""
    health = system.node_health()
    store, spool = health.get("store") or {}, health.get("spool") or {}
    return int(store.get("uploaded") or 0), int(store.get("refused") or 0), int(spool.get("lost_segments") or 0)


def _drained(system: System, timeout: float) -> None:
    """Wait until the node's backlog is at most one segment per camera (what it is recording now)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if ((system.node_health().get("spool") or {}).get("segments") or 0) <= len(CAMERAS):
                return
        time.sleep(0.5)


def attack_in_child(row: int, target: Target, seconds: float) -> str:
    """Run one attack (in a child process) and say what the attacker got back."""
    attack = next(a for a in ATTACKS if a.row == row)
    try:
        return asyncio.run(asyncio.wait_for(attack.run(target, seconds), seconds + 30))
    except TimeoutError:
        return f"no answer within {seconds + 30:.0f} s"
    except (OSError, websockets.WebSocketException) as exc:
        return f"{type(exc).__name__}: {exc}"


def run_row(system: System, attack: Attack, seconds: float) -> RowResult:
    system.ensure_store()
    _drained(system, 30)
    before_node = _node_counts(system)
    before_store = _store_ingest(system)
    before_rows = _index_rows(system)
    started = time.monotonic()
    # The attacker is its own process: its CPU-bound client work (masking 256 MiB) must not stall the monitor's
    # threads on this process's GIL and show up as the store's /health latency.
    with Monitor(system) as samples, ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            got = pool.submit(attack_in_child, attack.row, system.target, seconds).result(timeout=seconds + 60)
        except TimeoutError:
            got = f"no answer within {seconds + 60:.0f} s"
        elapsed = time.monotonic() - started
        time.sleep(2.0)  # what the attack set off, still measured
    restarted = samples.killed_at_cap or system.ensure_store()
    if samples.killed_at_cap:
        got += f" (store killed at the {SAFETY_RSS_BYTES // 1024**3} GiB safety cap)"
    elif restarted:
        got += " (the store died)"
    _drained(system, 40)
    after_node = _node_counts(system)
    after_store = _store_ingest(system)
    duplicates = int(after_store.get("duplicates", 0)) - int(before_store.get("duplicates", 0)) \
        if not restarted else int(after_store.get("duplicates", 0))
    timeouts = sum("TimeoutError" in e for e in samples.node_errors)
    return RowResult(
        row=attack.row, what=attack.what, rss_peak_mib=samples.rss_peak / MIB, temp_peak_mib=samples.temp_peak / MIB,
        health_p99_ms=p99(samples.health_ms), health_failures=samples.health_failures,
        ack_delay_max_s=samples.backlog_age_max_s, ingest_timeouts=timeouts, link_errors=len(samples.node_errors),
        lost=(after_node[2] - before_node[2]) + (after_node[1] - before_node[1]), duplicates=max(0, duplicates),
        attacker_got=got, store_restarted=restarted, seconds=elapsed, stored=_index_rows(system) - before_rows)


# --- the report ---------------------------------------------------------------------------------------------

HEADERS = ("#", "attack", "store peak RSS", "temp disk", "/health p99", "node: stored / slowest ack / "
           "timeouts / link errors", "lost / dup", "attacker got", "targets")


def table_rows(results: list[RowResult]) -> list[tuple[str, ...]]:
    return [(
        str(r.row), r.what, f"{r.rss_peak_mib:.0f} MiB", f"{r.temp_peak_mib:.1f} MiB",
        f"{r.health_p99_ms:.0f} ms" + (f" ({r.health_failures} failed)" if r.health_failures else ""),
        f"{r.stored} / {r.ack_delay_max_s:.1f} s / {r.ingest_timeouts} / {r.link_errors}",
        f"{r.lost} / {r.duplicates}",
        r.attacker_got.replace("|", "\\|").replace("\n", " "), verdict(r.ok),
    ) for r in results]


def markdown_table(results: list[RowResult]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
    return "\n".join(lines)


def markdown_section(results: list[RowResult], seconds: float, load: tuple[float, float, float]) -> str:
    passed = sum(r.ok for r in results)
    return f"""Every row of issue 14's table, replayed by `python3 -m bench abuse` (`just bench abuse`) against a
real `sht store` (authentication on) with `sht node` recording 2 synthetic cameras (320x240, 10 fps, 2 s
segments) into it, all on loopback; each attack runs in its own process, at most {seconds:.0f} s.

- **store peak RSS**: psutil, sampled every 50 ms while the attack runs and 2 s after.
- **temp disk**: the peak size of `ROOT/cache` (exports in progress and the thumbnail cache, which
  persists from row 3 on), sampled every 250 ms.
- **/health p99**: `GET /health` every 100 ms from another thread (a failure counts as 5 s).
- **node**: its segments the store indexed from the row's start until the node's backlog drained; the
  oldest unacknowledged segment's age seen in the node's `/health` (spool backlog; with 2 s segments up to
  ~2 s is normal); ack timeouts (`TimeoutError`) and other upload-link errors it reported.
- **lost / dup**: segments the node dropped or had refused; the store's `duplicates` counter.
- **attacker got**: the first reply (error code and message) or close code; row 7 lists each distinct answer.

Targets: peak RSS ≤ {TARGET_RSS_MIB} MiB, temporary disk ≤ 1 GiB, `/health` p99 ≤ {TARGET_HEALTH_P99_MS:.0f} ms,
0 ack timeouts, 0 lost or duplicated segments. A store past {SAFETY_RSS_BYTES // 1024**3} GiB RSS is killed (and
restarted for the next row).

{markdown_table(results)}

{passed} of {len(results)} rows meet every target.

Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average before the run
{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. Row 7 sends two of its messages as one 256 MiB frame and two in
1 MiB frames; with the node's own upload connection that is five `/ingest` connections for one node token, so
one attacker meets the per-token cap of 4. A well-formed header declaring 200 MiB of garbage is replayed in
tests/system/test_ingest_flood.py (its bytes are reserved from the ingest budget, read, refused by SHA-256;
store RSS peaked at 274 MiB there).
"""


def print_table(results: list[RowResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="SHT CCTV abuse benchmark", show_lines=True)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for cells in table_rows(results):
        table.add_row(*cells)
    Console(stderr=True, width=200).print(table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench abuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="longest an attack runs (default 15)")
    parser.add_argument("--rows", default="", help="rows to run, e.g. 1,7 (default: all)")
    parser.add_argument("--output", help="markdown file whose '## Abuse' section to replace "
                        "(default docs/benchmarks.md; --quick: none)")
    parser.add_argument("--quick", action="store_true", help="short attacks (5 s), writes nothing by default")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of footage before the first row")
    parser.add_argument("--tmp", help="directory for the store's root and the node's spool")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = 5.0 if args.quick and args.seconds == 15.0 else args.seconds
    wanted = {int(r) for r in args.rows.split(",") if r.strip()} if args.rows else {a.row for a in ATTACKS}
    output = Path(args.output) if args.output else (None if args.quick else Path("docs/benchmarks.md"))
    load = os.getloadavg()
    results: list[RowResult] = []
    with tempfile.TemporaryDirectory(prefix="sht-bench-abuse-", dir=args.tmp) as tmp_name:
        system = System(Path(tmp_name))
        try:
            system.start()
            time.sleep(args.warmup)  # footage for the exports and thumbnails
            for attack in ATTACKS:
                if attack.row in wanted:
                    print(f"row {attack.row}: {attack.what} …", file=sys.stderr, flush=True)
                    results.append(run_row(system, attack, seconds))
                    print(f"  {results[-1].attacker_got}", file=sys.stderr, flush=True)
        finally:
            system.stop()
    print_table(results)
    if output is not None:
        replace_section(output, SECTION, markdown_section(results, seconds, load))
        print(f"wrote the '{SECTION}' section of {output}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
