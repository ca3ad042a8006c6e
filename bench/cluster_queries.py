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
   cache miss on S3 reads an object the store has not read before (ranged GETs, store/segments/ranged.py).
   Then a PostgreSQL ``CHECKPOINT`` and a ``sync``: what the copy and the PUTs wrote is on disk before any
   request is timed, not written back by the kernel (or PostgreSQL's checkpointer) during the first round.
3. Measures search, timeline and thumbnails (misses, then hits) with bench/store.py's ``measure`` on
   sqlite+file (the baseline), postgresql+S3, sqlite+S3 and postgresql+file: one store process each, the same
   request sequence, the caches under the root emptied and the index read into the page cache before each;
   first one warm-up round over every setup, the same for each and not counted, then the measured rounds.
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
from bench.report import replace_section, source_commit, verdict
from store.index import index_path

SECTION = "## Cluster queries"
# Per round; every setup runs each round once, so the totals are ROUNDS times these.
FULL_PLAN = bs.Plan(search=250, timeline=250, thumb_miss=75, thumb_hit=50, exports=0, warmup=5)
QUICK_PLAN = bs.Plan(search=30, timeline=30, thumb_miss=10, thumb_hit=10, exports=0, warmup=2)
FULL_ROUNDS, QUICK_ROUNDS = 4, 2
S3_PREFIX = "queries"
PUT_AT_ONCE = 8
SETTLE_S = 5.0  # after a store listens, before its requests: its start-up work (retention's first sweep) is done
RATIO_TARGET = 2.0  # issue 16: PostgreSQL + S3 within 2x of SQLite + files
BASELINE = "sqlite+file"
TARGETED = "postgresql+S3"
METRICS = (  # (name in the table, short name, Measurements field)
    ("search: `segments`, 1 camera, random 1 h", "search", "search_ms"),
    ("timeline: 1 camera, random day, hour buckets", "timeline", "timeline_ms"),
    (f"thumbnail, cache miss ({bs.THUMB_WIDTH} px from 1280x720)", "thumbnail miss", "thumb_miss_ms"),
    ("thumbnail, cache hit", "thumbnail hit", "thumb_hit_ms"),
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
    usage_scan_s: dict[str, float]  # backend -> StoreUsage.load, the scan a lease holder makes before each sweep
    flush_s: float = 0.0  # CHECKPOINT and sync after the copy and the PUTs

    @property
    def settle_s(self) -> float:
        """How long a store is left after it listens (on PostgreSQL its first sweep re-reads the usage totals)."""
        return max(SETTLE_S, 2.0 + 1.5 * max(self.usage_scan_s.values(), default=0.0))


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


def usage_scan_s(where: Path | str) -> float:
    """Seconds ``StoreUsage.load`` takes on this index (the second of two runs: its pages in the cache): the
    COUNT and SUM over every segment a PostgreSQL store holding the maintenance lease makes before each sweep."""
    from store.maintenance.retention import StoreUsage, open_index

    async def timed() -> float:
        index = await open_index(where)
        try:
            await StoreUsage.load(index)
            t = time.perf_counter()
            await StoreUsage.load(index)
            return time.perf_counter() - t
        finally:
            await index.close()

    return asyncio.run(timed())


def flush_writes(index_url: str) -> float:
    """Seconds to put what the copy and the PUTs wrote on disk: PostgreSQL's ``CHECKPOINT`` (else its
    checkpointer spreads the last one over minutes, into the measured rounds) and the kernel's dirty pages
    (``sync``: SeaweedFS's volumes, PostgreSQL's files). Every timed request then meets a quiet disk; a thumbnail
    miss fsyncs the JPEG it caches, which behind gigabytes of writeback waited up to hundreds of ms."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(index_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()
    return time.monotonic() - started


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
                  logs: Path, console: Console, seed: int = 2, settle_s: float = SETTLE_S) -> bs.Measurements:
    """One store process on ``setup``, its caches empty and its index in the page cache, left ``settle_s``
    after it listens."""
    shutil.rmtree(setup.root / "cache", ignore_errors=True)  # thumbnails and S3 copies of an earlier setup
    warmed, warm_s = read_into_cache(setup.warm)
    with bs.store_process(setup.root, logs / f"{setup.name}.log", args=["--detect", "off", *setup.args],
                          env=setup.env) as (url, startup_s):
        time.sleep(settle_s)
        m = asyncio.run(bs.measure(url, built, plan, token, seed=seed, thumbs=thumbs))
    m.startup_s = startup_s
    console.print(f"    {setup.name}: index read in {warm_s:.1f} s ({warmed / 1e9:.1f} GB), store up in "
                  f"{startup_s:.1f} s; p99 search {bs.pct(m.search_ms, 99):.1f} ms, timeline "
                  f"{bs.pct(m.timeline_ms, 99):.1f} ms, thumbnail miss {bs.pct(m.thumb_miss_ms, 99):.1f} ms")
    return m


@dataclass
class Measured:
    pooled: dict[str, bs.Measurements]  # setup -> its figures over the measured rounds (start-up: the median)
    rounds: list[dict[str, bs.Measurements]]  # each measured round's, setup -> figures
    warmup: dict[str, bs.Measurements] | None = None  # the warm-up round's, not counted


def measure_rounds(setups: Sequence[Setup], built: bs.Built, plan: bs.Plan, rounds: int,
                   thumbs: Sequence[tuple[str, int]], tokens: dict[Path, str], logs: Path,
                   console: Console, settle_s: float = SETTLE_S, warmup_round: bool = True) -> Measured:
    """``rounds`` rounds, after one warm-up round when ``warmup_round`` (every setup once, in the same way, its
    figures kept apart and not counted: the first requests of the machine's first store processes after the data
    was made, of SeaweedFS's and PostgreSQL's first reads). In each round every setup runs ``plan`` (the same
    requests for all, new ones each round, its own slice of ``thumbs``: one slice per round, warm-up included),
    the setups' order rotated one place per round, so a busy spell of the machine falls on each of them alike."""
    slices = rounds + (1 if warmup_round else 0)
    per = len(thumbs) // slices
    assert per == plan.warmup + plan.thumb_miss, "thumbs: a slice of warm-up and miss thumbnails per round"

    def one_round(index: int, label: str, seed: int) -> dict[str, bs.Measurements]:
        console.print(f"  {label}")
        got = {}
        order = index % len(setups)
        for setup in [*setups[order:], *setups[:order]]:
            got[setup.name] = measure_setup(setup, built, plan, thumbs[index * per:(index + 1) * per],
                                            tokens[setup.root], logs, console, seed=seed, settle_s=settle_s)
        return got

    warmup = one_round(0, "warm-up round (not counted)", seed=1) if warmup_round else None
    first = 1 if warmup_round else 0
    measured = [one_round(first + r, f"round {r + 1} of {rounds}", seed=2 + r) for r in range(rounds)]
    pooled = {s.name: bs.Measurements() for s in setups}
    for name, into in pooled.items():
        for got in measured:
            m = got[name]
            for _, _, attr in METRICS:
                getattr(into, attr).extend(getattr(m, attr))
            into.search_items.extend(m.search_items)
        into.startup_s = bs.pct([got[name].startup_s for got in measured], 50)
    return Measured(pooled, measured, warmup)


# --- the report --------------------------------------------------------------------------------

def result_rows(measured: dict[str, bs.Measurements]) -> list[bs.Row]:
    """Per setup and metric: p50 / p99, and the ratio of each to the baseline's; the target on the targeted setup."""
    base = measured.get(BASELINE)
    rows = []
    for name, m in measured.items():
        rows.append(bs.Row(name, "store start-up (process start → listening)", f"{m.startup_s:.1f} s"))
        for metric, _, attr in METRICS:
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
        bs.Row("data", "usage totals: `StoreUsage.load` (COUNT and SUM over segments), index in the page cache",
               ", ".join(f"{k} {v:.2f} s" for k, v in prepared.usage_scan_s.items())),
        bs.Row("data", "written out before measuring (PostgreSQL `CHECKPOINT`, then `sync`)",
               f"{prepared.flush_s:.1f} s"),
    ]


def findings(result: Measured, prepared: Prepared) -> list[str]:
    measured = result.pooled
    base, target = measured.get(BASELINE), measured.get(TARGETED)
    if base is None or target is None:
        return []
    def ratios(m: bs.Measurements, p: float) -> dict[str, float]:
        return {short: bs.pct(getattr(m, attr), p) / bs.pct(getattr(base, attr), p) for _, short, attr in METRICS}

    out = []
    p99 = ratios(target, 99)
    worst = max(p99, key=lambda k: p99[k])
    met = all(v <= RATIO_TARGET for v in p99.values())
    out.append(f"{TARGETED} against {BASELINE}, p99: " + ", ".join(f"{k} {v:.2f}×" for k, v in p99.items())
               + " (p50: " + ", ".join(f"{k} {v:.2f}×" for k, v in ratios(target, 50).items()) + "). "
               + (f"Within {RATIO_TARGET:g}× for every request; " if met else
                  f"Over {RATIO_TARGET:g}× for {', '.join(k for k, v in p99.items() if v > RATIO_TARGET)}; ")
               + f"the largest is {worst} ({p99[worst]:.2f}×).")
    for half in ("sqlite+S3", "postgresql+file"):
        if half in measured:
            out.append(f"{half} (one part changed at a time), p99: " + ", ".join(
                f"{k} {v:.2f}×" for k, v in ratios(measured[half], 99).items()) + f" of {BASELINE}'s.")
    out.append(thumbnail_misses_by_round(result))
    scan = prepared.usage_scan_s.get("PostgreSQL")
    if scan is not None:
        out.append(f"Not in these figures: a store on PostgreSQL holding the maintenance lease re-reads the usage "
                   f"totals (COUNT and SUM over all {prepared.built.scale.rows:,} segments) before each retention "
                   f"sweep, once a minute; that took {scan:.1f} s here (SQLite's store reads them once, at start: "
                   f"{prepared.usage_scan_s.get('SQLite', 0.0):.1f} s). Each store was left "
                   f"{prepared.settle_s:.0f} s after it listened, past its first sweep, before its requests; a request "
                   "arriving during that scan shares the machine with it.")
    return out


def thumbnail_misses_by_round(result: Measured) -> str:
    """Each setup's thumbnail-miss p99 in each round, the warm-up round's first: how much the pooled p99 owes to
    one round."""
    def p99s(name: str) -> str:
        counted = "/".join(f"{bs.pct(r[name].thumb_miss_ms, 99):.0f}" for r in result.rounds)
        if result.warmup is None:
            return f"{name} {counted}"
        return f"{name} ({bs.pct(result.warmup[name].thumb_miss_ms, 99):.0f}) {counted}"

    warm = " (in brackets the warm-up round's, not counted)" if result.warmup is not None else ""
    return (f"Thumbnail-miss p99 by round, ms{warm}: " + "; ".join(p99s(name) for name in result.pooled) + ".")


def markdown_section(rows: list[bs.Row], info: dict[str, str], plan: bs.Plan, rounds: int, media: bs.Media,
                     quick: bool, found: Sequence[str], settle_s: float = SETTLE_S) -> str:
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
        "cache miss reads a segment the store has not read before: on S3 ranged GETs of the 256 KiB blocks the "
        "thumbnail reads (the MP4's head and index, the GOP before its moment: store/segments/ranged.py) into the "
        "store's in-memory block cache, not the whole ~2.6 MB object.",
        f"- **Requests**: bench/store.py's `measure` through a real `sht store` (`--detect off --max-age off "
        f"--min-free off`) and `StoreClient` over loopback, one at a time on one connection; per round and "
        f"setup {plan.search} searches (1 camera, a random hour), {plan.timeline} timelines (1 camera, a random "
        f"day, hour buckets), {plan.thumb_miss} thumbnail misses then {plan.thumb_hit} hits, after {plan.warmup} "
        "warm-up requests of each kind (not counted). Every setup gets the same requests.",
        f"- **Setups**: sqlite+file (the baseline), postgresql+S3 (the cluster's setup), sqlite+S3 and "
        f"postgresql+file (one part changed at a time). Once the data is made, a PostgreSQL `CHECKPOINT` and a "
        "`sync`, so what the copy and the PUTs wrote is on disk before any request is timed; then one warm-up "
        "round over every setup, run as the others and not counted (its thumbnail-miss p99 is under Findings), "
        f"then {rounds} rounds; in each, every setup runs once, in an "
        "order rotated one place per round (so a busy spell of this shared machine falls on each alike), on "
        "new requests and its own thumbnails; the figures are pooled over the rounds. Before each run: a new "
        "store process (its in-memory S3 block cache empty), the caches under its root (thumbnails, S3 copies) "
        "emptied, the index's files read "
        f"once into the page cache, as on a store in use, and {settle_s:.0f} s after the store listens (its "
        "start-up work, retention's first sweep, is over).",
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
    scans = {"SQLite": usage_scan_s(index_path(built.root)), "PostgreSQL": usage_scan_s(index_url)}
    console.print("  usage totals (COUNT, SUM over segments): " + ", ".join(f"{k} {v:.1f} s" for k, v in scans.items()))
    flush_s = flush_writes(index_url)
    console.print(f"  CHECKPOINT and sync: {flush_s:.1f} s")
    return Prepared(built, copied, len(names), put_s, scans, flush_s), index_url, segments_url


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.cluster_queries", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 6 cameras, 2 days, few requests; writes "
                                                        "nothing unless --output")
    p.add_argument("--cameras", type=int, help="cameras in the index (default 100; 6 with --quick)")
    p.add_argument("--days", type=int, help="days of footage (default 30; 2 with --quick)")
    p.add_argument("--rounds", type=int, help=f"rounds over every setup (default {FULL_ROUNDS}; {QUICK_ROUNDS} with "
                                              "--quick)")
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
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    scale = bs.Scale(cameras, days, round(bs.EVENTS_PER_CAMERA_DAY * cameras * days))
    output = Path(args.output) if args.output else (None if args.quick else Path("docs/benchmarks.md"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sht-bench-queries-", dir=args.tmp) as tmp_name, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        info = {**machine_info(tmp, load), "SQLite": bs.sqlite3.sqlite_version, "commit": source_commit()}
        console.print("encoding the real segments…")
        media = bs.make_media(tmp / "media")
        # A slice of thumbnails per round, the warm-up round's included: every miss reads an object not read before.
        thumbs = bs.thumbnail_sample(bs.camera_names(cameras), days, (rounds + 1) * (plan.warmup + plan.thumb_miss))
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
        measured = measure_rounds(setups, built, plan, rounds, thumbs, tokens, tmp, console, prepared.settle_s)
    rows = data_rows(prepared, media) + result_rows(measured.pooled)
    bs.print_table(rows, "SHT CCTV cluster queries" + (" (--quick: smoke run)" if args.quick else ""))
    console.print(f"total {time.monotonic() - started:.0f} s")
    if output is not None:
        replace_section(output, SECTION, markdown_section(rows, info, plan, rounds, media, args.quick,
                                                           findings(measured, prepared), prepared.settle_s))
        console.print(f"wrote the '{SECTION}' section of {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
