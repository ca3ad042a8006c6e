"""``/recordings`` (issue 18): time to first byte and to the end of the ``moov`` for 10 min, 1 h and 24 h ranges,
on an index whose rows carry their segments' shapes and on an older one whose rows do not, and a 10 min MP4's
throughput.

``python3 -m bench.recordings [--quick]`` (``just bench recordings``):

1. Encodes 3 real segments with the node's code (bench/store.py ``make_media``: 10 s, 1 s GOP; 1280x720 15 fps,
   ``--quick`` 640x360) and builds two stores of one camera over ``DAYS`` days of index rows rotating over them,
   each measured row with a file of its own (a hard link at the store's name for it, so the store reads and caches
   each segment's sample table separately, as it would distinct files; the page cache holds them all: a disk that
   must seek would add its own cost). In one every row carries its file's shape (the ``play_*`` columns, as
   ingest writes them); in the other, the **older index**, those columns are NULL (an index from before schema
   version 5).
2. Starts a real ``sht store`` on each in turn and, over loopback, GETs ``/recordings/cam00.mp4`` (viewer token):
   - **cold**: a range none of whose segments the store has read since it started (rows with shapes: only the
     tables of the segments the range cuts are read before answering); the same answer is read on until the
     ``mdat`` box header has arrived: the **whole head** (``ftyp`` and ``moov``, whose tables the store reads while
     it sends them), then the connection is closed;
   - **repeat**: the same URL again (the clip kept: what each Range request of a player costs);
   - **older index**: the same cold ranges on the store whose rows have no shapes (every table read, and the
     shapes written back, before the first byte: what the first request after an upgrade costs, once).
   Time to first byte is from the request to the status line; the first body byte is timed too. Before each
   request the bench waits for the store to be idle (a client that leaves early leaves it finishing the piece of
   the answer being made). The 10 min range is also read whole, for MB/s. Each store's peak RSS is read from
   /proc at the end.
3. Prints the table and replaces the "## Recordings" section of docs/benchmarks.md (``--quick`` writes nothing
   unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import cpu_model, replace_section, source_commit
from bench.store import (
    DAY_US,
    SEGMENT_US,
    SLOTS_PER_DAY,
    T0_US,
    Scale,
    build_index,
    camera_names,
    free_port,
    make_media,
    viewer_token,
)

SECTION = "## Recordings"
CAMERA = camera_names(1)[0]
MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
RANGES = (("10 min", 10 * MINUTE_US), ("1 h", HOUR_US), ("24 h", DAY_US))


@dataclass(frozen=True)
class Answer:
    first: float  # seconds from the request to the status line
    body_first: float  # ... to the first byte of the body, 0 if not read that far
    head: float  # ... to the end of the mdat box header (the whole ftyp and moov), 0 if not read that far
    total: float  # ... to the last byte read
    status: int
    body: int  # body bytes read
    moov: int  # the moov box's size, 0 if not read that far


def iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def head_end(body: bytes | bytearray) -> tuple[int, int] | None:
    """(bytes up to the end of the ``mdat`` box header, the ``moov``'s size) once that header is in ``body``."""
    at = moov = 0
    while len(body) >= at + 8:
        size, kind = struct.unpack_from(">I4s", body, at)
        header = 8
        if size == 1:  # a 64-bit size follows
            if len(body) < at + 16:
                return None
            size, header = struct.unpack_from(">Q", body, at + 8)[0], 16
        if kind == b"mdat":
            return (at + header, moov) if len(body) >= at + header else None
        if kind == b"moov":
            moov = size
        if size < header:
            raise ValueError(f"a {kind!r} box of {size} bytes before the mdat")
        at += size
    return None


def get(port: int, target: str, token: str, until: str = "status") -> Answer:
    """One GET on a connection of its own, read until the status line (``status``), the MP4's ``mdat`` header
    (``head``) or the end of the body (``all``), then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
        started = time.perf_counter()
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        data = s.recv(65536)
        first = time.perf_counter() - started
        head, sep, rest = data.partition(b"\r\n\r\n")
        while not sep and (more := s.recv(65536)):
            data += more
            head, sep, rest = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), -1)
        body, head_s, moov = bytearray(rest), 0.0, 0
        body_first = first if body else 0.0
        if until != "status" and not body and (more := s.recv(65536)):
            body_first = time.perf_counter() - started
            body += more
        if until == "head":
            while (found := head_end(body)) is None:
                if not (more := s.recv(1 << 20)):
                    raise RuntimeError(f"{target}: the answer ended after {len(body)} bytes, before its mdat")
                body += more
            head_s, moov = time.perf_counter() - started, found[1]
        n = len(body)
        if until == "all":
            buf = bytearray(1 << 20)
            while (k := s.recv_into(buf)) > 0:
                n += k
            assert n == length, f"{n} bytes of a body of {length}"
        return Answer(first, body_first, head_s, time.perf_counter() - started, status, n, moov)


def rss(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int) -> float:
    """The process's user + system CPU time so far, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout_s: float = 60.0) -> None:
    """Wait until the store is idle (under 10 ms of CPU in 100 ms). A client that closes an answer early leaves
    the store finishing the piece of it being made (up to 1 MiB of the head: for a day, thousands of segments'
    tables), which would otherwise land in the next request's time."""
    deadline = time.monotonic() + timeout_s
    before = cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_s(pid)
        if now - before < 0.01:
            return
        before = now


def cold_ranges(days: int, reps: int) -> list[tuple[str, int, int]]:
    """(name, from, span) of each run's ranges, none sharing a segment with another: 24 h ones a day each (days
    1..), shorter ones hours of the last day, far apart."""
    last_day = T0_US + (days - 1) * DAY_US
    return [(name, T0_US + (1 + r) * DAY_US if span == DAY_US
             else last_day + r * 2 * HOUR_US + (0 if span < HOUR_US else HOUR_US), span)
            for r in range(reps) for name, span in RANGES]


def target(from_us: int, span_us: int) -> str:
    return f"/recordings/{CAMERA}.mp4?from={iso(from_us)}&to={iso(from_us + span_us)}"


def warm_up(port: int, token: str, days: int) -> None:
    """One answer of a minute no measured range touches (the last hour of the last day), read whole, so the first
    measured request does not pay for what any first request does (imports, worker threads, SQLite's caches)."""
    start = T0_US + days * DAY_US - HOUR_US
    assert get(port, target(start, MINUTE_US), token, until="all").status == 200


def measure(port: int, pid: int, token: str, days: int, reps: int) -> dict[str, list[float]]:
    """Rows with shapes: cold (to the status line and to the end of the head), repeat, 10 min throughput; each
    request with the store idle (``settle``)."""
    out: dict[str, list[float]] = {}
    warm_up(port, token, days)
    for name, start, span in cold_ranges(days, reps):
        settle(pid)
        cold = get(port, target(start, span), token, until="head")
        settle(pid)
        repeat = get(port, target(start, span), token)
        assert cold.status == repeat.status == 200, (cold.status, repeat.status, target(start, span))
        out.setdefault(f"{name} cold", []).append(cold.first)
        out.setdefault(f"{name} body", []).append(cold.body_first)
        out.setdefault(f"{name} head", []).append(cold.head)
        out.setdefault(f"{name} moov MB", []).append(cold.moov / 1e6)
        out.setdefault(f"{name} repeat", []).append(repeat.first)
    last_day = T0_US + (days - 1) * DAY_US
    for r in range(reps):
        start = last_day + 12 * HOUR_US + r * 10 * MINUTE_US
        settle(pid)
        get(port, target(start, 10 * MINUTE_US), token)  # the layout first: this measures the bytes
        settle(pid)
        whole = get(port, target(start, 10 * MINUTE_US), token, until="all")
        assert whole.status == 200
        out.setdefault("throughput MB/s", []).append(whole.body / whole.total / 1e6)
        out.setdefault("10 min MP4 MB", []).append(whole.body / 1e6)
    return out


def measure_older(port: int, pid: int, token: str, days: int, reps: int) -> dict[str, list[float]]:
    """Rows without shapes: the same cold ranges, to the status line, the store idle before each."""
    out: dict[str, list[float]] = {}
    warm_up(port, token, days)
    for name, start, span in cold_ranges(days, reps):
        settle(pid)
        first = get(port, target(start, span), token)
        assert first.status == 200, (first.status, target(start, span))
        out.setdefault(f"{name} older index", []).append(first.first)
    return out


@contextlib.contextmanager
def running_store(root: Path, log: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A real ``sht store`` on ``root`` (no retention limits), as (port, process), once it answers /health."""
    port = free_port()
    cmd = [sys.executable, "-m", "sht", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
           "--max-age", "off", "--min-free", "off", "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the store did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench recordings", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="640x360, 2 repetitions; writes nothing unless --output")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    reps = args.reps or (2 if args.quick else 3)
    days = reps + 2  # day 0 (bench/store.py leaves its files to the prune), one 24 h range a day, the last day
    width, height = (640, 360) if args.quick else (1280, 720)
    load_start = os.getloadavg()
    results: dict[str, list[float]] = {}
    memory: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recordings-") as tmp:
        work = Path(tmp)
        media = make_media(work / "media", width, height, 15)
        own = [(CAMERA, T0_US + k * SEGMENT_US) for k in range(SLOTS_PER_DAY, days * SLOTS_PER_DAY)]
        for shapes in (True, False):
            built = build_index(work / f"root-{shapes}", Scale(1, days, 0), media, own=own, shapes=shapes)
            token = viewer_token(built.root)
            with running_store(built.root, work / f"store-{shapes}.log") as (port, proc):
                assert get(port, "/health", token, until="all").status == 200
                if shapes:
                    memory["at start"] = rss(proc.pid)
                    results |= measure(port, proc.pid, token, days, reps)
                    memory |= {"at the end": rss(proc.pid), "peak": rss(proc.pid, "VmHWM")}
                else:
                    results |= measure_older(port, proc.pid, token, days, reps)
                    memory["peak on the older index"] = rss(proc.pid, "VmHWM")
    load_end = os.getloadavg()
    section = report(results, memory, media.shared[0][1], width, height, reps, load_start, load_end)
    print(section)
    output = args.output or (None if args.quick else "docs/benchmarks.md")
    if output:
        replace_section(Path(output), SECTION, section.split("\n", 1)[1])
    return 0


def report(results: dict[str, list[float]], memory: dict[str, int], segment_bytes: int, width: int, height: int,
           reps: int,
           load_start: tuple[float, float, float], load_end: tuple[float, float, float]) -> str:
    def med(key: str) -> float:
        return statistics.median(results[key])

    def ms(key: str) -> str:
        return f"{med(key) * 1000:.0f} ms ({', '.join(f'{v * 1000:.0f}' for v in results[key])})"

    lines = [SECTION, "",
             f"`python3 -m bench recordings` ({datetime.now(UTC):%Y-%m-%d}, commit {source_commit()}): a real `sht "
             f"store` over loopback, one camera of {width}x{height} 15 fps 10 s segments ({segment_bytes / 1e6:.2f} "
             f"MB each), each measured segment a file of its own. Medians of {reps} runs (each run in brackets). "
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, load average {load_start[0]:.2f} at the start and "
             f"{load_end[0]:.2f} at the end (other work shared the machine).", "",
             "| range | time to first byte (status line), cold | first body byte, cold "
             "| older index (first request) | repeat (clip kept) | whole head (`ftyp` + `moov`), cold | `moov` |",
             "|---|---|---|---|---|---|---|"]
    for name, _ in RANGES:
        lines.append(f"| {name} | {ms(f'{name} cold')} | {ms(f'{name} body')} | {ms(f'{name} older index')} "
                     f"| {ms(f'{name} repeat')} | {ms(f'{name} head')} | {med(f'{name} moov MB'):.2f} MB |")
    day_moov = med("24 h moov MB")
    day_ms, short_ms = med("24 h cold") * 1000, med("10 min cold") * 1000
    older_day_ms = med("24 h older index") * 1000
    lines += ["", f"A whole 10 min MP4 ({med('10 min MP4 MB'):.0f} MB) streams at {med('throughput MB/s'):.0f} MB/s "
              f"({', '.join(f'{v:.0f}' for v in results['throughput MB/s'])}), client and store on the same "
              f"cores. The store's RSS: " + ", ".join(f"{v / 2**20:.0f} MiB {k}" for k, v in memory.items()) + ".", "",
              "Time to first byte no longer grows with the range: it reads no file per segment and passes over no day "
              "of rows. A `moov`-first MP4 with a known `Content-Length` needs every sample's size before its first "
              "byte; each segment's index row carries its *shape* (samples, keyframes, payload bytes, where the "
              "samples start, decode times: the `play_*` columns, `store/playback/segment_shape.py`, written at "
              "ingest), and each hour's summary row (`coverage_hours.playback`, `store/playback/parts.py`) the "
              "sums of the shapes that start in it, their gaps and whether each can be taken whole. For a long "
              "range the store reads the tables of the first and last segments, the summaries of the whole hours "
              "between and the rows of the two partial hours at the ends (`store/playback/sizing.py`), which give "
              "the head's counts: the status line, `Content-Length`, `ETag` and the head's first bytes go out at "
              "once, and the plan (a loop over every row, `store/playback/stream_layout.py`) is made while they "
              "do, then checked against those counts (an answer whose plan differs is ended, never sent wrong). "
              f"Here a day's {SLOTS_PER_DAY:,} rows answer in {day_ms:.0f} ms against {short_ms:.0f} ms for 10 "
              f"minutes (what is left is at most two hours of rows), and {older_day_ms:.0f} ms when every "
              "table must be read. The `moov` itself grows with the range "
              f"(~5 bytes a frame: {day_moov:.1f} MB for a day here); its big tables (`stts`, `stss`, `stsz`) are "
              "written while it is sent (`store/playback/stream_head.py`), each segment's table read as its part "
              "goes out: the whole head (until the `mdat` header has arrived) takes time that grows with the range, "
              "as any `moov`-first file must, but the answer has started (no proxy or player timeout waits on an "
              "empty connection) and a short range's head follows at once. The same URL again (every Range request "
              "a player makes) reuses the kept clip. **Older index**: rows indexed before schema version 5 have "
              "no shape (NULL `play_*`), so the first request over them reads every segment's table before "
              "answering, as the store used to, and writes the shapes back (`store/index/shapes.py`): the "
              "one-off cost of an upgrade, after which those rows answer like the cold column. Before each "
              "request the bench waits for the store to be idle: a client that leaves after the status line "
              "leaves the store finishing the plan and the piece of the head it has begun. \"Cold\" here still has "
              "every file in the page cache (one camera's files are hard links to 3 encodes); a disk that must "
              "seek adds its own time per segment read, which now lands in the head, not before the first byte. "
              "The store's memory grows with what it keeps, not with what it sends: the cached tables (~12 bytes "
              "a frame), the clips kept (16, at most 100,000 chunks: a day is 8,640) and what the allocator holds "
              "after making them; the body is read from the segment files 1 MiB at a time."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
