"""Queries on PostgreSQL + S3 against SQLite + files (issue 16): the same 30-day index of 100 cameras, the same
requests, through a real ``sht store`` each time.

``python3 -m bench cluster-queries [--quick] [--cameras N] [--days N] [--output PATH]``
(``just bench cluster-queries``):

1. Encodes a few real segments and builds the SQLite index of bench/store.py (``build_index``: the store's schema,
   rows rotating over the real segments, the timeline's hour summaries made by the store's code). The thumbnails
   to ask for are drawn first; the rows they land on get files of their own, at the names the store gives them.
2. Starts a throwaway PostgreSQL (durable, as bench/cluster_servers.py starts it) and SeaweedFS, copies the SQLite
   index into PostgreSQL (bench/index_copy.py: the store's own schema, ``COPY``, the store's indexes made again,
   ``VACUUM ANALYZE``) and PUTs one object per file a thumbnail reads (with the store's own S3 code), so each
   cache miss on S3 is a GET.
3. Measures search, timeline and thumbnails (misses, then hits) with bench/store.py's ``measure`` on
   sqlite+file (the baseline), postgresql+S3, sqlite+S3 and postgresql+file: one store process each, the same
   request sequence, the caches under the root emptied and the index read into the page cache before each.
4. Prints a table with each figure's ratio to the baseline and replaces the "## Cluster queries" section of
   docs/benchmarks.md (``--quick`` writes nothing unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

import bench.store as bs
from bench import cluster_servers as servers
from bench.cluster import machine_info
from bench.index_copy import CopyTimes, copy_index
from bench.report import replace_section, verdict
from store.index import index_path

SECTION = "## Cluster queries"
FULL_PLAN = bs.Plan(search=1000, timeline=1000, thumb_miss=300, thumb_hit=200, exports=0, warmup=5)
QUICK_PLAN = bs.Plan(search=60, timeline=60, thumb_miss=20, thumb_hit=20, exports=0, warmup=2)
S3_PREFIX = "queries"
PUT_AT_ONCE = 8
RATIO_TARGET = 2.0  # issue 16: PostgreSQL + S3 within 2x of SQLite + files
BASELINE = "sqlite+file"
TARGETED = "postgresql+S3"
METRICS = (  # (name in the table, Measurements field)
    ("search: `segments`, 1 camera, random 1 h", "search_ms"),
    ("timeline: 1 camera, random day, hour buckets", "timeline_ms"),
    (f"thumbnail, cache miss ({bs.THUMB_WIDTH} px from 1280x720)", "thumb_miss_ms"),
    ("thumbnail, cache hit", "thumb_hit_ms"),
)


@dataclass
class Setup:
    name: str
    root: Path
    args: list[str]
    warm: list[Path]  # the index's files, read into the page cache before measuring
    env: dict[str, str] | None = None


@dataclass
class Prepared:
    built: bs.Built
    copy: CopyTimes
    objects: int
    put_s: float


# --- preparing the data -------------------------------------------------------------------------

def segment_names(built: bs.Built, own: Iterable[tuple[str, int]], media: bs.Media) -> list[str]:
    """The segment names (below ``segments/``) the measured requests may read: the thumbnails' own files and the
    shared ones the other rows rotate over."""
    from store.segments import name_of

    names = [name_of(bs.own_path(camera, start)) for camera, start in own]
    names += [name_of(f"{bs.SOURCE_DIR}/{i}.mp4") for i in range(len(media.shared))]
    return [n for n in names if n is not None]


async def put_objects(url: str, env: dict[str, str], root: Path, names: Sequence[str], cache: Path) -> None:
    """PUT each segment file under ``root/segments`` as the store would (its own S3 code, SHA-256 verified)."""
    import hashlib

    from store.segments.s3 import S3Segments
    from store.segments.url import S3Location, parse_segments_url

    location = parse_segments_url(url)
    assert isinstance(location, S3Location)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    segments = S3Segments(location, cache)
    try:
        await segments.start()
        limit = asyncio.Semaphore(PUT_AT_ONCE)

        async def put(name: str) -> None:
            async with limit:
                data = await asyncio.to_thread((root / "segments" / name).read_bytes)
                await segments.put(name, data, hashlib.sha256(data).hexdigest())

        await asyncio.gather(*(put(n) for n in names))
    finally:
        await segments.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def link_tree(source: Path, target: Path, names: Iterable[str]) -> None:
    """Hard links of ``source/segments/NAME`` at ``target/segments/NAME``: the same files for a second root."""
    for name in names:
        to = target / "segments" / name
        to.parent.mkdir(parents=True, exist_ok=True)
        os.link(source / "segments" / name, to)


def database_files(cluster: servers.PostgresCluster, url: str) -> list[Path]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return [cluster.directory / "data" / "base" / str(row[0])]


def read_into_cache(paths: Iterable[Path]) -> tuple[int, float]:
    """Read every file below ``paths`` once (bytes, seconds): the index as a store in use has it, in the page
    cache, for every backend alike."""
    total, started = 0, time.monotonic()
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            with contextlib.suppress(OSError), f.open("rb", buffering=0) as h:
                while chunk := h.read(8 << 20):
                    total += len(chunk)
    return total, time.monotonic() - started


# --- measuring ---------------------------------------------------------------------------------

def measure_setup(setup: Setup, built: bs.Built, plan: bs.Plan, thumbs: Sequence[tuple[str, int]], token: str,
                  logs: Path, console: Console) -> tuple[bs.Measurements, float]:
    """One store process on ``setup``, its caches empty and its index in the page cache; (figures, warm-up s)."""
    shutil.rmtree(setup.root / "cache", ignore_errors=True)  # thumbnails and S3 copies of an earlier setup
    warmed, warm_s = read_into_cache(setup.warm)
    console.print(f"  {setup.name}: index read into the page cache ({warmed / 1e9:.1f} GB, {warm_s:.0f} s); "
                  "starting the store…")
    with bs.store_process(setup.root, logs / f"{setup.name}.log", args=["--detect", "off", *setup.args],
                          env=setup.env) as (url, startup_s):
        m = asyncio.run(bs.measure(url, built, plan, token, thumbs=thumbs))
    m.startup_s = startup_s
    console.print(f"  {setup.name}: search p99 {bs.pct(m.search_ms, 99):.1f} ms, timeline p99 "
                  f"{bs.pct(m.timeline_ms, 99):.1f} ms, thumbnail miss p99 {bs.pct(m.thumb_miss_ms, 99):.1f} ms")
    return m, warm_s


# --- the report --------------------------------------------------------------------------------

def result_rows(measured: dict[str, bs.Measurements]) -> list[bs.Row]:
    """Per setup and metric: p50 / p99, and the ratio of each to the baseline's; the target on the targeted setup."""
    base = measured.get(BASELINE)
    rows = []
    for name, m in measured.items():
        rows.append(bs.Row(name, "store start-up (process start → listening)", f"{m.startup_s:.1f} s"))
        for metric, attr in METRICS:
            values: list[float] = getattr(m, attr)
            p50, p99 = bs.pct(values, 50), bs.pct(values, 99)
            value = f"{p50:.1f} / {p99:.1f} ms"
            target, ok = "", None
            if base is not None and name != BASELINE:
                b50, b99 = bs.pct(getattr(base, attr), 50), bs.pct(getattr(base, attr), 99)
                value += f"; {p50 / b50:.2f}× / {p99 / b99:.2f}× {BASELINE}"
                if name == TARGETED:
                    target, ok = f"p99 ≤ {RATIO_TARGET:g}× {BASELINE}", p99 <= RATIO_TARGET * b99
            rows.append(bs.Row(name, f"{metric} p50 / p99 (n={len(values)})", value, target, ok))
    return rows


def data_rows(prepared: Prepared, media: bs.Media) -> list[bs.Row]:
    b, c = prepared.built, prepared.copy
    s = b.scale
    return [
        bs.Row("data", "SQLite index (bench/store.py's build_index)",
               f"{s.rows:,} segments + {s.events:,} events over {s.days} days, {s.cameras} cameras, "
               f"{b.db_bytes / 1e6:,.0f} MB; built in {b.build_s:.0f} s"),
        bs.Row("data", "copied into PostgreSQL (schema, COPY, the store's indexes again, VACUUM ANALYZE)",
               f"{c.database_bytes / 1e6:,.0f} MB; {c.total_s:.0f} s (COPY {c.copy_s:.0f} s, indexes "
               f"{c.indexes_s:.0f} s, vacuum {c.vacuum_s:.0f} s)"),
        bs.Row("data", "objects PUT to S3 (one per thumbnail asked, + the shared segments)",
               f"{prepared.objects} objects of {media.shared[0][1] / 1e6:.1f} MB in {prepared.put_s:.1f} s"),
    ]


def findings(measured: dict[str, bs.Measurements]) -> list[str]:
    base, target = measured.get(BASELINE), measured.get(TARGETED)
    if base is None or target is None:
        return []
    out = []
    ratios = {metric: bs.pct(getattr(target, attr), 99) / bs.pct(getattr(base, attr), 99) for metric, attr in METRICS}
    worst = max(ratios, key=lambda k: ratios[k])
    out.append(f"{TARGETED} against {BASELINE}, p99: " + ", ".join(f"{k.split(':')[0].split(',')[0]} "
                                                                   f"{v:.2f}×" for k, v in ratios.items())
               + f"; the largest is {worst.split(':')[0]} ({ratios[worst]:.2f}×).")
    for half in ("sqlite+S3", "postgresql+file"):
        if half in measured:
            m = measured[half]
            out.append(f"{half} (one part changed at a time): p99 " + ", ".join(
                f"{k.split(':')[0].split(',')[0]} {bs.pct(getattr(m, a), 99) / bs.pct(getattr(base, a), 99):.2f}×"
                for k, a in METRICS) + f" of {BASELINE}.")
    return out


def markdown_section(rows: list[bs.Row], info: dict[str, str], plan: bs.Plan, media: bs.Media, quick: bool,
                     found: Sequence[str]) -> str:
    lines = [
        "Generated by `just bench cluster-queries` (`python3 -m bench cluster-queries"
        + (" --quick`; a smoke run, not the reference numbers)" if quick else "`)") + "; rerun it to refresh "
        "this section. The other sections of this page come from the other benchmarks.", "",
        "### What is measured", "",
        "- **The same rows on both backends**: the SQLite index of `just bench store` (bench/store.py "
        "`build_index`: the store's schema, 10 s segments, the events, the timeline's hour summaries made by the "
        "store's code), copied into a throwaway PostgreSQL 15 on this machine (fsync on, default settings) with "
        "the store's own schema and indexes, then `VACUUM ANALYZE` (bench/index_copy.py).",
        f"- **Footage**: {len(media.shared)} real {media.width}x{media.height} 10 s segments made by the node's "
        "code; the rows rotate over them. The thumbnails are drawn before the index is built, and each row one "
        "lands on has a file (SQLite + files) or an object in SeaweedFS on this machine (S3) of its own, so every "
        "cache miss reads a segment the store has not read before: on S3 a GET of ~2.6 MB into the store's "
        "segment cache.",
        f"- **Requests**: bench/store.py's `measure` through a real `sht store` (`--detect off --max-age off "
        f"--min-free off`) and `StoreClient` over loopback, one at a time on one connection: {plan.search} "
        f"searches (1 camera, a random hour), {plan.timeline} timelines (1 camera, a random day, hour buckets), "
        f"{plan.thumb_miss} thumbnail misses then {plan.thumb_hit} hits, after {plan.warmup} warm-up requests of "
        "each kind. Every setup gets the same request sequence.",
        "- **Setups**, one store process each, in this order: sqlite+file (the baseline), postgresql+S3 (the "
        "cluster's setup), sqlite+S3 and postgresql+file (one part changed at a time). Before each: the caches "
        "under the root (thumbnails, S3 copies) emptied, and the index's files read once into the page cache, as "
        "on a store in use.",
        f"- **Target** (issue 16): postgresql+S3 p99 within {RATIO_TARGET:g}× of sqlite+file's, for each request.",
        "",
        "### Machine", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
        "### Results", "",
        "| setup | metric | measured (p50 / p99; ratios to the baseline) | target | result |", "|---|---|---|---|---|",
        *[f"| {r.scale} | {r.metric} | {r.value} | {r.target} | {verdict(r.ok)} |" for r in rows], "",
        *(["### Findings", "", *[f"- {f}" for f in found], ""] if found else []),
    ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------

def prepare(tmp: Path, scale: bs.Scale, media: bs.Media, thumbs: Sequence[tuple[str, int]],
            weed: servers.Seaweed, cluster: servers.PostgresCluster, console: Console) -> tuple[Prepared, str, str]:
    """The SQLite index, its copy in PostgreSQL, the objects: (what was made, the index URL, the segments URL)."""
    own = sorted({(camera, bs.segment_start(at)) for camera, at in thumbs})
    console.print(f"building the SQLite index: {scale.rows:,} segment rows, {scale.events:,} events…")
    built = bs.build_index(tmp / "sqlite", scale, media, own=own)
    console.print(f"  built in {built.build_s:.0f} s ({built.db_bytes / 1e6:,.0f} MB); copying into PostgreSQL…")
    index_url = cluster.create_database()
    copied = copy_index(index_path(built.root), index_url, progress=lambda line: console.print(f"  {line}"))
    console.print(f"  copied in {copied.total_s:.0f} s ({copied.database_bytes / 1e6:,.0f} MB); PUTting objects…")
    names = segment_names(built, own, media)
    segments_url = weed.url(prefix=S3_PREFIX)
    t = time.monotonic()
    asyncio.run(put_objects(segments_url, weed.env(), built.root, names, tmp / "put-cache"))
    put_s = time.monotonic() - t
    link_tree(built.root, tmp / "pg", names)
    return Prepared(built, copied, len(names), put_s), index_url, segments_url


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.cluster_queries", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 6 cameras, 2 days, few requests; writes "
                                                        "nothing unless --output")
    p.add_argument("--cameras", type=int, help="cameras in the index (default 100; 6 with --quick)")
    p.add_argument("--days", type=int, help="days of footage (default 30; 2 with --quick)")
    p.add_argument("--output", help=f"page whose '{SECTION}' section is replaced (default docs/benchmarks.md; "
                                    "none with --quick)")
    p.add_argument("--tmp", help="directory for the indexes and stores (default: the system's temporary directory)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    load = os.getloadavg()
    missing = servers.seaweed_missing() or servers.postgres_missing()
    if missing:
        console.print(f"[red]cannot run: {missing}[/red]")
        return 2
    cameras, days = args.cameras or (6 if args.quick else 100), args.days or (2 if args.quick else 30)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    scale = bs.Scale(cameras, days, round(bs.EVENTS_PER_CAMERA_DAY * cameras * days))
    output = Path(args.output) if args.output else (None if args.quick else Path("docs/benchmarks.md"))
    started = time.monotonic()
    measured: dict[str, bs.Measurements] = {}
    with tempfile.TemporaryDirectory(prefix="sht-bench-queries-", dir=args.tmp) as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        info = {**machine_info(tmp, load), "SQLite": bs.sqlite3.sqlite_version}
        console.print("encoding the real segments…")
        media = bs.make_media(tmp / "media")
        thumbs = bs.thumbnail_sample(bs.camera_names(cameras), days, plan.warmup + plan.thumb_miss)
        weed = stack.enter_context(servers.seaweed(tmp / "seaweed"))
        cluster = stack.enter_context(servers.postgres())
        prepared, index_url, segments_url = prepare(tmp, scale, media, thumbs, weed, cluster, console)
        built = prepared.built
        pg_root = tmp / "pg"
        tokens = {built.root: bs.viewer_token(built.root), pg_root: bs.viewer_token(pg_root)}  # pg: before its start
        sqlite_files = [index_path(built.root)]
        pg_files = database_files(cluster, index_url)
        setups = [
            Setup(BASELINE, built.root, [], sqlite_files),
            Setup(TARGETED, pg_root, ["--index", index_url, "--segments", segments_url], pg_files, weed.env()),
            Setup("sqlite+S3", built.root, ["--segments", segments_url], sqlite_files, weed.env()),
            Setup("postgresql+file", pg_root, ["--index", index_url], pg_files),
        ]
        console.print("measuring…")
        for setup in setups:
            measured[setup.name], _ = measure_setup(setup, built, plan, thumbs, tokens[setup.root], tmp, console)
    rows = data_rows(prepared, media) + result_rows(measured)
    bs.print_table(rows, "SHT CCTV cluster queries" + (" (--quick: smoke run)" if args.quick else ""))
    console.print(f"total {time.monotonic() - started:.0f} s")
    if output is not None:
        replace_section(output, SECTION, markdown_section(rows, info, plan, media, args.quick, findings(measured)))
        console.print(f"wrote the '{SECTION}' section of {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
