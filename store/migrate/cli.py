"""``sht store migrate``: the command and what it prints. Only argparse at the top: sht/cli.py imports this (through
store/admin/commands.py) when it builds its parser."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from store.segments.options import add_segments_flag

if TYPE_CHECKING:
    from store.migrate.run import MigrateOptions, MigrateReport

_S3 = "s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT[&region=R]"
SHOWN = 50  # lines of each kind of trouble printed


def add_migrate_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    migrate = sub.add_parser(
        "migrate", help="move a stopped store's index to PostgreSQL and/or its segments to an S3 bucket (resumable; "
                        "the store is only read)",
        description="Copy the store at --root (its ROOT/index.sqlite3 and its segments) to a PostgreSQL index, an "
                    "S3 bucket, or both, then verify the copy. The store must be stopped; nothing in --root is "
                    "changed. Run the same command again to finish a copy that was interrupted. docs/cluster.md, "
                    "'Moving an existing store'.")
    migrate.add_argument("--root", required=True, help="the store's data directory (its sht store --root)")
    add_segments_flag(migrate)  # where the store keeps its segments now
    migrate.add_argument("--to-index", metavar="URL",
                         help="postgresql://USER[:PASS]@HOST[:PORT]/DB: an empty database (or the one an unfinished "
                              "migrate of this store left) to hold the index")
    migrate.add_argument("--to-segments", metavar="URL",
                         help=f"{_S3}: an empty bucket prefix (or the one an unfinished migrate of this store left) "
                              "to hold the segments; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    migrate.add_argument("--parallel", type=int, default=8, help="objects sent at once (default 8)")
    migrate.add_argument("--stop-after", metavar="DURATION",
                         help="copy segments for this long (e.g. 25m), then stop (exit 3): start the store meanwhile "
                              "so its nodes empty their spools, stop it and run the same command again; it goes on")
    migrate.add_argument("--log-level", default="warning")
    migrate.set_defaults(func=cmd_migrate)


def _error(message: str) -> int:
    print(f"sht store migrate: error: {message}", file=sys.stderr)
    return 2


def _say(line: str) -> None:
    print(line, flush=True)


def options_from_args(args: argparse.Namespace) -> MigrateOptions:
    """ValueError naming the flag that is wrong."""
    from store.index.location import check_index_url, is_postgres
    from store.migrate.run import MigrateOptions
    from store.replica.cli import parse_replica_url
    from store.segments.options import segments_from_args

    if not args.to_index and not args.to_segments:
        raise ValueError("say where to: --to-index postgresql://... and/or --to-segments s3://...")
    if args.to_index and not is_postgres(check_index_url(args.to_index)):
        raise ValueError(f"--to-index {args.to_index!r}: give postgresql://USER[:PASS]@HOST[:PORT]/DB (the store's "
                         "own index is SQLite already)")
    if not 1 <= args.parallel <= 64:
        raise ValueError(f"--parallel {args.parallel}: give 1 to 64")
    to_segments = parse_replica_url(args.to_segments, "--to-segments")
    stop_after = None
    if args.stop_after is not None:
        from shared.timespec import TimeSpecError, parse_duration

        try:
            stop_after = parse_duration(args.stop_after) / 1e6
        except TimeSpecError as exc:
            raise ValueError(f"--stop-after: {exc}") from None
    return MigrateOptions(Path(args.root), args.to_index or None, to_segments, segments_from_args(args),
                          args.parallel, stop_after)


def cmd_migrate(args: argparse.Namespace) -> int:
    import logging

    from store.maintenance.lockfile import StoreBusy, StoreLock
    from store.migrate import MigrateError
    from store.migrate.run import Interrupted, migrate
    from store.migrate.source import index_uri

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        options = options_from_args(args)
        index_uri(options.root)  # a wrong --root: said before the lock file would be made there
    except (ValueError, MigrateError) as exc:
        return _error(str(exc))
    try:
        with StoreLock.acquire(options.root, "sht store migrate"):
            report = asyncio.run(migrate(options, _say))
    except StoreBusy as exc:
        return _error(f"{exc}; migrate copies a store at rest")
    except KeyboardInterrupt:
        return _error("interrupted; what was copied is kept: run the same command again to go on from there")
    except Interrupted as exc:
        return _error(f"{exc}; what was copied is kept: run the same command again to go on from there")
    except (MigrateError, OSError) as exc:  # IndexUnavailable, SegmentStoreError: before anything was written
        return _error(str(exc))
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            return _error(" ".join(str(exc).split()))
        raise
    return _print(report, options, args)


def _command(options: MigrateOptions, args: argparse.Namespace) -> str:
    """The ``sht store`` command line for the store on its new backends."""
    from store.index.location import redacted

    words = ["sht", "store", "--root", str(options.root)]
    if options.to_index:
        words += ["--index", redacted(options.to_index)]
    segments = options.to_segments.url() if options.to_segments is not None else args.segments
    if segments:
        words += ["--segments", segments]
    return " ".join(shlex.quote(w) for w in words)


def _print(report: MigrateReport, options: MigrateOptions, args: argparse.Namespace) -> int:
    from store.index.location import redacted
    from store.migrate.progress import duration, size

    command = _command(options, args)
    password = options.to_index is not None and redacted(options.to_index) != options.to_index
    if report.already_done:
        print(f"{options.root} was migrated there already (an earlier run finished and verified it): nothing to do")
        print(f"start the store on the new backends: {command}")
        return 0
    segments, verification = report.segments, report.verification
    assert segments is not None
    done = []
    if options.to_segments is not None:
        done.append(f"{segments.put:,} objects PUT ({size(segments.put_bytes)}, {size(segments.rate)}/s)")
        done.append(f"{segments.present:,} already there")
    if options.to_index is not None:
        done.append(f"{segments.rows_written:,} segment rows written")
    if segments.removed:
        done.append(f"{segments.removed:,} the source no longer has removed")
    print(f"copied: {', '.join(done)}; in {duration(report.duration_s)}"
          + (" (a run taken up where an earlier one stopped)" if report.resumed else ""))
    if report.paused:
        print(f"stopped after {duration(report.duration_s)} (--stop-after), segments left to copy: start the store "
              "if it must record meanwhile, stop it, then run the same command again; it goes on from there",
              file=sys.stderr)
        return 3
    assert verification is not None
    if report.tokens is not None:
        print(f"tokens: the signing key of {options.root / 'keys'} with {report.tokens[0]} issued and "
              f"{report.tokens[1]} revoked tokens (the nodes' tokens stay valid)")
    if verification.counts:
        print("rows, source -> target: " + ", ".join(f"{t} {a:,}{'' if a == b else f' -> {b:,} (!)'}"
                                                      for t, a, b in verification.counts))
    if verification.objects_confirmed:
        print(f"verified: {verification.objects_confirmed:,} objects hold the SHA-256 of their row (the server's "
              "checksum, by HEAD)")
    if verification.orphans_removed:
        print(f"removed {verification.orphans_removed} objects this migration had copied whose segments the source "
              "no longer has")
    for line in verification.notes:
        print(f"note: {line}")
    for line in segments.skipped[:SHOWN]:
        print(f"not copied: {line}")
    if segments.skipped_count > SHOWN:
        print(f"... and {segments.skipped_count - SHOWN:,} more segments not copied")
    if not verification.ok:
        for line in verification.problems[:SHOWN]:
            print(f"problem: {line}")
        if verification.problem_count > SHOWN:
            print(f"... and {verification.problem_count - SHOWN:,} more problems")
        print(f"the copy is NOT complete: fix what is listed (for segments the source cannot give: `sht store check "
              f"--root {options.root} --deep`, and --repair with the store stopped), then run the same migrate "
              "again; it goes on from where it is", file=sys.stderr)
        return 1
    print("the copy is complete and verified")
    print(f"start the store on the new backends: {command}" +
          (" (your password in place of ***, or in PGPASSWORD or ~/.pgpass)" if password else ""))
    left = [p for p, gone in ((options.root / "index.sqlite3", options.to_index),
                              (options.root / "segments", options.to_segments and args.segments is None)) if gone]
    if left:
        print(f"{' and '.join(str(p) for p in left)} {'are' if len(left) > 1 else 'is'} left as before and no longer "
              "used: keep it until the new store has run well, then delete it")
    return 0
