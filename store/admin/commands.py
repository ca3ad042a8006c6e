"""``sht store`` flags and admin subcommands: prune, check, rebuild-index, backup.

Imported by sht/cli.py when it builds its parser, so only argparse is loaded at the top;
each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from store.index.location import add_index_flag, default_index_url, index_from_args, sqlite_path
from store.migrate.cli import add_migrate_command
from store.replica.cli import add_replica_flag, add_restore_command
from store.segments.options import add_segments_flag, opened, segments_from_args

if TYPE_CHECKING:
    from store.maintenance.check import CheckReport
    from store.maintenance.garbage import CollectReport
    from store.maintenance.rebuild import RebuildReport
    from store.maintenance.retention import RetentionPolicy, SweepReport
    from store.media.budget import MediaLimits
    from store.segments import SegmentStore


SHOW_PER_KIND = 20  # problems listed per kind before "... and N more"


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-age", default="30d",
                   help="delete footage older than this, e.g. 30d, 12h, 2w, or 'off' (default 30d; "
                        "a camera's retention_days setting overrides it)")
    p.add_argument("--max-bytes", help="keep all segments together under this size, e.g. 500G or 1.5T")
    p.add_argument("--min-free", default="2%",
                   help="keep this much of the disk free by deleting the oldest footage, e.g. 10%% or 50G, "
                        "or 'off' (default 2%%: a full disk would stop recording)")


def add_media_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--thumb-cache", default=None,
                   help="size bound of the thumbnail cache (least recently used go first), e.g. 512M or 2%%; "
                        "default: 256M or 1%% of the disk, whichever is smaller")
    p.add_argument("--temp-per-token", default="768M",
                   help="temporary disk and memory one token's exports and thumbnails in progress may hold at "
                        "once (an export counts its segments' size), e.g. 2G; more is refused (default 768M)")
    p.add_argument("--temp-total", default="2G",
                   help="the same, for all tokens together (default 2G)")


def add_store_commands(store: argparse.ArgumentParser) -> None:
    """Retention and media flags for the server, and the admin subcommands (optional: plain ``sht store``
    serves)."""
    add_limit_flags(store)
    add_media_flags(store)
    add_segments_flag(store)
    add_index_flag(store)
    add_replica_flag(store)
    sub = store.add_subparsers(dest="store_command", metavar="{prune,check,rebuild-index,backup,restore,migrate}")

    prune = sub.add_parser("prune", help="apply retention limits now and print what went")
    _add_root(prune)
    add_segments_flag(prune)
    add_index_flag(prune)
    add_limit_flags(prune)
    prune.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    prune.set_defaults(func=cmd_prune)

    check = sub.add_parser("check", help="verify the index against the files (exit 1 if anything is wrong)")
    _add_root(check)
    add_segments_flag(check)
    add_index_flag(check)
    check.add_argument("--deep", action="store_true", help="also verify every file's SHA-256 (reads everything)")
    check.add_argument("--repair", action="store_true",
                       help="fix what was found: drop rows of missing files, quarantine mismatched files, re-index "
                            "orphans, delete temporaries and what retention left to delete. Takes ROOT/store.lock, "
                            "so it refuses while a store runs on --root (a SQLite index: stop the store). Beside "
                            "stores sharing a PostgreSQL index and a bucket, give it a --root of its own: what it "
                            "deletes or moves is fenced against their ingest (docs/cluster.md)")
    check.add_argument("--drop-missing", action="store_true",
                       help="with --repair: drop the rows of missing segments even when they are more than half "
                            "of the index (without it those rows are kept: the segments are more likely elsewhere, "
                            "a wrong --root or --segments, than gone)")
    check.set_defaults(func=cmd_check)

    rebuild = sub.add_parser("rebuild-index", help="build a fresh index from the files (store must be stopped)")
    _add_root(rebuild)
    add_segments_flag(rebuild)
    rebuild.set_defaults(func=cmd_rebuild)

    backup = sub.add_parser("backup", help="consistent copy of the index, safe while the store runs")
    _add_root(backup)
    backup.add_argument("-o", "--output", required=True, help="file to write the copy to")
    backup.set_defaults(func=cmd_backup)
    add_restore_command(sub)  # from an off-site copy (store/replica/cli.py)
    add_migrate_command(sub)  # to PostgreSQL and S3 (store/migrate/cli.py)


def _add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="the store's data directory")
    p.add_argument("--log-level", default="warning")


def _positive(name: str, parse: Callable[[str], int], text: str) -> int:
    """A flag's value parsed and more than zero; ``TimeSpecError`` naming the flag otherwise."""
    from shared.timespec import TimeSpecError

    try:
        value = parse(text)
    except TimeSpecError as exc:
        raise TimeSpecError(f"{name}: {exc}") from None
    if value <= 0:
        raise TimeSpecError(f"{name} must be more than zero, got {text!r}")
    return value


def _size_or_percent(name: str, text: str, most_percent: float, what: str) -> tuple[int | None, float | None]:
    """``SIZE`` (bytes, percent None) or ``N%`` with 0 < N <= ``most_percent`` (None, percent)."""
    from shared.timespec import TimeSpecError, parse_size

    text = text.strip()
    if not text.endswith("%"):
        return _positive(name, parse_size, text), None
    try:
        percent = float(text[:-1])
    except ValueError:
        percent = -1.0
    if not 0 < percent <= most_percent:
        raise TimeSpecError(f"{name}: {text!r} is not a percentage{' ' + what if what else ''} between 0 and "
                            f"{most_percent:g}")
    return None, percent


def policy_from_args(args: argparse.Namespace) -> RetentionPolicy:
    """The policy the flags describe; raises ValueError (``TimeSpecError``) naming the bad flag."""
    from shared.timespec import TimeSpecError, parse_duration, parse_size
    from store.maintenance.retention import RetentionPolicy

    max_age = None if args.max_age.strip().lower() in ("off", "none") else _positive("--max-age", parse_duration,
                                                                                   args.max_age)
    max_bytes = _positive("--max-bytes", parse_size, args.max_bytes) if args.max_bytes else None
    free_bytes = free_percent = None
    if args.min_free and args.min_free.strip().lower() not in ("off", "none"):
        free_bytes, free_percent = _size_or_percent("--min-free", args.min_free, 100, "")
        if free_percent == 100:
            raise TimeSpecError(f"--min-free: {args.min_free.strip()!r} is not a percentage between 0 and 100")
    return RetentionPolicy(max_age_us=max_age, max_bytes=max_bytes, min_free_bytes=free_bytes,
                           min_free_percent=free_percent)


def media_limits_from_args(args: argparse.Namespace) -> MediaLimits:
    """The limits ``add_media_flags`` describe; raises ValueError (``TimeSpecError``) naming the bad flag."""
    from shared.timespec import parse_size
    from store.media.budget import MediaLimits

    cache_bytes = cache_percent = None
    if args.thumb_cache is not None:
        cache_bytes, cache_percent = _size_or_percent("--thumb-cache", args.thumb_cache, 50, "of the disk")
    return MediaLimits(temp_per_token=_positive("--temp-per-token", parse_size, args.temp_per_token),
                       temp_total=_positive("--temp-total", parse_size, args.temp_total),
                       thumb_cache_bytes=cache_bytes, thumb_cache_percent=cache_percent)


def _error(command: str, message: str) -> int:
    print(f"sht store {command}: error: {message}", file=sys.stderr)
    return 2


def _index_url(args: argparse.Namespace) -> str:
    """The index ``--index`` names, else ROOT/index.sqlite3; ValueError if the flag is wrong or, for SQLite, there
    is no such file (a wrong --root must not create an empty index)."""
    given = index_from_args(args)
    url = given or default_index_url(Path(args.root))
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ValueError(f"no index at {path}: is {'--index' if given else '--root'} right?")
    return url


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _when(us: int | None) -> str:
    from shared.clock import iso_utc

    return "-" if us is None else iso_utc(us)[:19] + "Z"


def _setup(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")


# --- prune -------------------------------------------------------------------------------------

def cmd_prune(args: argparse.Namespace) -> int:
    from store.maintenance.lockfile import StoreBusy, StoreLock

    _setup(args)
    try:
        policy = policy_from_args(args)
        segments = segments_from_args(args)
        index = _index_url(args)
    except ValueError as exc:
        return _error("prune", str(exc))
    root = Path(args.root)
    try:
        # A running store keeps its own running total and applies its own limits: not both at once.
        with StoreLock.acquire(root, "sht store prune"):
            report, collected = asyncio.run(_prune(root, policy, args.dry_run, segments, index))
    except StoreBusy as exc:
        return _error("prune", f"{exc}, or give it --max-age/--max-bytes/--min-free and let it prune")
    except OSError as exc:  # SegmentStoreError (S3 down, no bucket), IndexUnavailable (PostgreSQL down)
        return _error("prune", str(exc))
    _print_sweep(report, collected)
    return 1 if collected is not None and collected.errors else 0


async def _prune(root: Path, policy: RetentionPolicy, dry_run: bool, segments: SegmentStore | None,
                 index_url: str) -> tuple[SweepReport, CollectReport | None]:
    from shared.clock import now_us
    from store.maintenance.garbage import collect
    from store.maintenance.lease import lease_for
    from store.maintenance.lockfile import StoreBusy
    from store.maintenance.retention import open_index, sweep

    lease = lease_for(index_url)  # a shared index: not while one of its stores runs retention
    async with opened(segments):
        index = await open_index(index_url)
        try:
            await lease.start()
            if not lease.held:
                raise StoreBusy("a store sharing this index holds its maintenance lease and prunes by its own limits")
            report = await sweep(index, root, policy, now_us(), dry_run=dry_run, segments=segments)
            # Also the files an earlier prune or a stopped store left to delete.
            return report, None if dry_run else await collect(index.conn, root, segments=segments)
        finally:
            await lease.stop()
            await index.close()


def _print_sweep(report: SweepReport, collected: CollectReport | None) -> None:
    from rich.console import Console
    from rich.table import Table

    verb = "would delete" if report.dry_run else "deleted"
    table = Table(title=f"sht store prune{' (dry run)' if report.dry_run else ''}")
    for col in ("camera", f"{verb} (segments)", "bytes", "oldest remaining (UTC)"):
        table.add_column(col, justify="left" if col.startswith(("camera", "oldest")) else "right")
    for camera, c in sorted(report.by_camera.items()):
        table.add_row(camera, str(c.segments), _size(c.bytes), _when(c.oldest_remaining_us))
    table.add_row("all", str(report.deleted), _size(report.bytes_freed), _when(report.oldest_remaining_us),
                  style="bold")
    console = Console()
    console.print(table)
    reasons = ", ".join(f"{k} {v}" for k, v in report.by_reason.items())
    console.print(f"{verb} {report.deleted} segments, {report.bytes_freed} bytes ({reasons}) in "
                  f"{report.duration_s:.2f} s; {report.skipped_locked} kept for locked events")
    if report.unmet_bytes:
        console.print(f"[yellow]could not free {_size(report.unmet_bytes)} more: the rest is locked or gone")
    if collected is not None:
        console.print(f"deleted {collected.files} files, {_size(collected.bytes)}, in {collected.duration_s:.2f} s")
    if collected is not None and collected.errors:
        console.print(f"[red]{collected.errors} files could not be deleted (see the log above for why); they are "
                      "still listed for deletion: fix the cause and run `sht store prune` again")


# --- check -------------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    from store.maintenance.lockfile import StoreBusy, StoreLock

    _setup(args)
    root = Path(args.root)
    try:
        index = _index_url(args)
        segments = segments_from_args(args)
        if not args.repair:
            report = asyncio.run(_check(root, args.deep, False, segments, index))
            _print_check(report, running=_store_pid(root))
            return 0 if report.ok else 1
        with StoreLock.acquire(root, "sht store check --repair"):
            report = asyncio.run(_check(root, args.deep, True, segments, index, args.drop_missing))
    except StoreBusy as exc:
        shared = "" if sqlite_path(index) is not None else (
            "; beside the stores sharing this PostgreSQL index, run --repair with a --root of its own")
        return _error("check", f"{exc}{shared}")
    except ValueError as exc:
        return _error("check", str(exc))
    except OSError as exc:  # SegmentStoreError (S3 down, no bucket), IndexUnavailable (PostgreSQL down)
        return _error("check", str(exc))
    _print_check(report, running=None)
    return 0 if report.ok else 1


async def _check(root: Path, deep: bool, repair: bool, segments: SegmentStore | None,
                 index_url: str, drop_missing: bool = False) -> CheckReport:
    from store.index.db import Index
    from store.maintenance.check import check_store

    async with opened(segments):
        index = await Index.open(index_url)
        try:
            return await check_store(root, index, deep=deep, repair=repair, segments=segments,
                                     drop_missing=drop_missing)
        finally:
            await index.close()


def _store_pid(root: Path) -> int | None:
    """Pid of a store that seems to run on ROOT (from its lock file), for a warning only."""
    try:
        words = (root / "store.lock").read_text().split()
        pid = int(words[-1]) if words[:2] == ["store", "pid"] else None
        if pid is not None:
            os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _print_check(report: CheckReport, running: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"sht store check{' --deep' if report.deep else ''}")
    table.add_column("problem")
    table.add_column("count", justify="right")
    labels = {"missing": "rows whose file is missing", "size": "size mismatches",
              "sha256": "SHA-256 mismatches" if report.deep else "SHA-256 mismatches (not checked: --deep)",
              "orphan": "files with no row (orphans)", "temporary": "leftover temporaries"}
    for kind, n in report.counts().items():
        table.add_row(labels[kind], str(n), style="red" if n else None)
    console.print(table)
    console.print(f"{report.rows} rows, {report.files} segment files ({report.pending_deletion} of them removed by "
                  f"retention, waiting to be deleted), {report.other_files} other files; {report.duration_s:.2f} s")
    for kind in labels:
        found = [p for p in report.problems if p.kind == kind]
        for p in found[:SHOW_PER_KIND]:
            console.print(f"  {kind}: {p.path}: {p.detail}", highlight=False, soft_wrap=True)
        if len(found) > SHOW_PER_KIND:
            console.print(f"  {kind}: ... and {len(found) - SHOW_PER_KIND} more")
    for line in report.repaired:
        console.print(f"  repaired: {line}", highlight=False, soft_wrap=True)
    for line in report.unrepaired:
        console.print(f"  [red]NOT repaired[/red]: {line}", highlight=False, soft_wrap=True)
    if running is not None:
        console.print(f"[yellow]a store (pid {running}) is running on this root: segments it is writing or "
                      "deleting right now can show up as problems; check again to confirm")
    if report.ok:
        console.print("[green]clean: the index and the files agree")
    elif report.repaired and not report.unrepaired:
        console.print("[yellow]problems found and repaired; run check again to confirm")
    else:
        console.print("[red]problems found" + ("" if report.repaired else "; `--repair` fixes them"))


# --- rebuild-index and backup ------------------------------------------------------------------

def _sqlite_only(args: argparse.Namespace, command: str, instead: str) -> None:
    """ValueError if ``sht store --index postgresql://... COMMAND`` asks a SQLite-file command for PostgreSQL."""
    given = index_from_args(args)
    if given is not None and sqlite_path(given) is None:
        raise ValueError(f"{command} works on the SQLite file ROOT/index.sqlite3; for a PostgreSQL index {instead}")


def cmd_rebuild(args: argparse.Namespace) -> int:
    from store.maintenance.lockfile import StoreBusy, StoreLock

    _setup(args)
    root = Path(args.root)
    try:
        _sqlite_only(args, "rebuild-index", "use `sht store check --repair --index URL` (it re-indexes orphans)")
        segments = segments_from_args(args)
    except ValueError as exc:
        return _error("rebuild-index", str(exc))
    where = root / "segments" if segments is None else segments.description
    if segments is None and not (root / "segments").is_dir():
        return _error("rebuild-index", f"no {root / 'segments'} directory: is --root right?")
    try:
        with StoreLock.acquire(root, "sht store rebuild-index"):
            report = asyncio.run(_rebuild(root, segments))
    except StoreBusy as exc:
        return _error("rebuild-index", str(exc))
    except OSError as exc:  # SegmentStoreError among them: S3 down, no bucket
        return _error("rebuild-index", str(exc))
    print(f"indexed {report.indexed} segments ({_size(report.bytes)}) from {where} "
          f"in {report.duration_s:.2f} s")
    if report.carried:
        print("carried over from the old index: " + ", ".join(f"{n} {t} rows" for t, n in report.carried.items()))
    for note in report.notes:
        print(f"note: {note}")
    if report.backup is not None:
        print(f"the old index is kept as {report.backup}")
    for line in report.skipped:
        print(f"skipped (left in place): {line}")
    return 0


async def _rebuild(root: Path, segments: SegmentStore | None) -> RebuildReport:
    from store.maintenance.rebuild import rebuild_index

    async with opened(segments):
        return await rebuild_index(root, segments)


def cmd_backup(args: argparse.Namespace) -> int:
    import sqlite3

    from store.maintenance.rebuild import backup_index

    _setup(args)
    try:
        _sqlite_only(args, "backup", "use PostgreSQL's own pg_dump or continuous archiving")
        result = backup_index(Path(args.root), Path(args.output))
    except (OSError, ValueError, sqlite3.Error) as exc:
        return _error("backup", str(exc))
    print(f"wrote {result.path}: {_size(result.bytes)}, {result.segments} segments, in {result.duration_s:.2f} s")
    return 0
