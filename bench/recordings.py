"""``/recordings`` (issue 18): time to first byte for 10 min, 1 h and 24 h ranges, and throughput of a 10 min MP4.

``python3 -m bench.recordings [--quick]`` (``just bench recordings``):

1. Encodes 3 real segments with the node's code (bench/store.py ``make_media``: 10 s, 1 s GOP; 1280x720 15 fps,
   ``--quick`` 640x360) and builds a store of one camera over ``DAYS`` days of index rows rotating over them, each
   measured row with a file of its own (a hard link at the store's name for it, so the store reads and caches each
   segment's sample table separately, as it would distinct files; the page cache holds them all: a disk that must
   seek would add its own cost to "cold").
2. Starts a real ``sht store`` on it and, over loopback, GETs ``/recordings/cam00.mp4`` (viewer token) for:
   - **cold**: a range none of whose segments the store has read since it started (the sample table of every
     segment read and parsed);
   - **tables cached**: a range over the same segments shifted by a second (a new layout, every table cached);
   - **repeat**: the same URL again (the layout kept: what each Range request of a player costs).
   Time to first byte is from the request to the status line (the layout is computed before it). The 10 min range
   is also read whole, for MB/s. The store's peak RSS is read from /proc at the end.
3. Prints the table and replaces the "## Recordings" section of docs/benchmarks.md (``--quick`` writes nothing
   unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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
RANGES = (("10 min", 10 * MINUTE_US), ("1 h", 60 * MINUTE_US), ("24 h", DAY_US))


def iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def get(port: int, target: str, token: str, read_all: bool) -> tuple[float, float, int, int]:
    """(seconds to the status line, seconds to the end, status, body bytes read) of one GET."""
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
        n = len(rest)
        if read_all:
            buf = bytearray(1 << 20)
            while (k := s.recv_into(buf)) > 0:
                n += k
            assert n == length, f"{n} bytes of a body of {length}"
        return first, time.perf_counter() - started, status, n


def rss(pid: int, field: str = "VmRSS") -> int:
    """The process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(port: int, token: str, days: int, reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}

    def ttfb(label: str, from_us: int, span_us: int) -> None:
        target = f"/recordings/{CAMERA}.mp4?from={iso(from_us)}&to={iso(from_us + span_us)}"
        first, _, status, _ = get(port, target, token, read_all=False)
        assert status == 200, (status, target)
        out.setdefault(label, []).append(first)

    # Each cold range gets segments nobody read yet: 24 h ones a day each (days 1..), shorter ones hours of the last
    # day, far apart.
    last_day = T0_US + (days - 1) * DAY_US
    for r in range(reps):
        for name, span in RANGES:
            start = T0_US + (1 + r) * DAY_US if span == DAY_US else last_day + r * 2 * 3600_000_000 + (
                0 if span < 3600_000_000 else 3600_000_000)
            ttfb(f"{name} cold", start, span)
            ttfb(f"{name} tables cached", start + 1_000_000, span)
            ttfb(f"{name} repeat", start + 1_000_000, span)
    for r in range(reps):
        start = last_day + 12 * 3600_000_000 + r * 10 * MINUTE_US
        target = f"/recordings/{CAMERA}.mp4?from={iso(start)}&to={iso(start + 10 * MINUTE_US)}"
        get(port, target, token, read_all=False)  # the layout first: this measures the bytes
        _, total, status, n = get(port, target, token, read_all=True)
        assert status == 200
        out.setdefault("throughput MB/s", []).append(n / total / 1e6)
        out.setdefault("10 min MP4 MB", []).append(n / 1e6)
    return out


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
    with tempfile.TemporaryDirectory(prefix="bench-recordings-") as tmp:
        work = Path(tmp)
        media = make_media(work / "media", width, height, 15)
        own = [(CAMERA, T0_US + k * SEGMENT_US) for k in range(SLOTS_PER_DAY, days * SLOTS_PER_DAY)]
        built = build_index(work / "root", Scale(1, days, 0), media, own=own)
        token = viewer_token(built.root)
        port = free_port()
        log = work / "store.log"
        cmd = [sys.executable, "-m", "sht", "store", "--root", str(built.root), "--host", "127.0.0.1", "--port",
               str(port), "--max-age", "off", "--min-free", "off", "--log-level", "warning"]
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
            get(port, "/health", token, read_all=True)
            memory = {"at start": rss(proc.pid)}
            results = measure(port, token, days, reps)
            memory |= {"at the end": rss(proc.pid), "peak": rss(proc.pid, "VmHWM")}
        finally:
            proc.terminate()
            proc.wait(30)
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

    lines = [SECTION, "",
             f"`python3 -m bench recordings` ({datetime.now(UTC):%Y-%m-%d}, commit {source_commit()}): a real `sht "
             f"store` over loopback, one camera of {width}x{height} 15 fps 10 s segments ({segment_bytes / 1e6:.2f} "
             f"MB each), each measured segment a file of its own. Medians of {reps} runs (each run in brackets). "
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, load average {load_start[0]:.2f} at the start and "
             f"{load_end[0]:.2f} at the end (other work shared the machine).", "",
             "| range | time to first byte, cold | tables cached | repeat (layout kept) |", "|---|---|---|---|"]
    for name, _ in RANGES:
        cells = []
        for kind in ("cold", "tables cached", "repeat"):
            values = results[f"{name} {kind}"]
            cells.append(f"{med(f'{name} {kind}') * 1000:.0f} ms ({', '.join(f'{v * 1000:.0f}' for v in values)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"A whole 10 min MP4 ({med('10 min MP4 MB'):.0f} MB) streams at {med('throughput MB/s'):.0f} MB/s "
              f"({', '.join(f'{v:.0f}' for v in results['throughput MB/s'])}), client and store on the same "
              f"cores. The store's RSS: " + ", ".join(f"{v / 2**20:.0f} MiB {k}" for k, v in memory.items()) + ".", "",
              "Time to first byte grows with the range: a `moov`-first MP4 with a known `Content-Length` needs every "
              "sample's size before its first byte, so the store reads each segment's sample table (its `moov`, a "
              "few KiB) and lays the file out before answering. Cold, that is one open, a few reads and a parse per "
              "segment (8,640 for a day of 10 s segments); the tables are then cached (`store/playback/"
              "segment_tables.py`, about 3 million samples), so a second range over the same footage only pays for "
              "the layout, and the same URL again (every Range request a player makes) reuses the layout and "
              "answers at once. \"Cold\" here still has every file in the page cache (one camera's files are hard "
              "links to 3 encodes); a disk that must seek adds its own time per segment. The store's memory grows "
              "with what it keeps, not with what it sends: the cached tables (~12 bytes a frame), the layouts kept "
              "(16, their heads at most 48 MiB: a day's `moov` is ~5 bytes a frame, 7 MB here) and what the "
              "allocator holds after making them "
              "(a day's layout needs ~100 bytes a frame while it is made; at most 2 are made at once); the body is "
              "read from the segment files 1 MiB at a time."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
