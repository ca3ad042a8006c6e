"""``sht store --replica URL`` and ``sht store restore``: the flag, its parsing, and the command. Only argparse at
the top: sht/cli.py imports this when it builds its parser."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from store.segments.options import add_segments_flag

if TYPE_CHECKING:
    from store.replica.restore import RestoreReport
    from store.segments import SegmentStore
    from store.segments.url import S3Location

_FORM = "s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT[&region=R]"


def add_replica_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replica", default=None, metavar="URL",
                   help=f"copy every segment and event to this second object store, continuously: {_FORM} "
                        "(credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; needs pip install "
                        "'sht-cctv[cluster]'); docs/cluster.md 'Off-site copy'")


def replica_from_args(args: argparse.Namespace) -> S3Location | None:
    """The location ``--replica`` names (None without it); ValueError naming the flag when it is not an s3:// URL."""
    return parse_replica_url(getattr(args, "replica", None), "--replica")


def parse_replica_url(text: str | None, flag: str) -> S3Location | None:
    if not text:
        return None
    from store.segments.url import S3Location, parse_segments_url

    location = parse_segments_url(text, flag)
    if not isinstance(location, S3Location):
        raise ValueError(f"{flag} {text!r}: the copy goes to an object store: give {_FORM}")
    return location


def add_restore_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    restore = sub.add_parser("restore", help="build a store (segments, index, events) from its off-site copy "
                                             "(--replica) into an empty root")
    restore.add_argument("--from", dest="source", required=True, metavar="URL",
                         help=f"the copy: the store's --replica URL, {_FORM}")
    restore.add_argument("--root", required=True, help="the new store's data directory: empty or not there yet")
    add_segments_flag(restore)
    restore.add_argument("--log-level", default="warning")
    restore.set_defaults(func=cmd_restore)


def _error(message: str) -> int:
    print(f"sht store restore: error: {message}", file=sys.stderr)
    return 2


def cmd_restore(args: argparse.Namespace) -> int:
    import logging

    from store.maintenance.lockfile import StoreBusy
    from store.segments.options import segments_from_args

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.root)
    try:
        source = parse_replica_url(args.source, "--from")
        segments = segments_from_args(args)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ValueError(f"{root} is not empty: restore builds a new store, give --root a new or empty "
                             "directory")
    except (ValueError, OSError) as exc:
        return _error(str(exc))
    assert source is not None
    try:
        report = asyncio.run(_restore(root, source, segments))
    except PartialRestore as exc:
        return _error(f"{exc.__cause__}; {root} holds a partial store: empty it and run restore again")
    except (StoreBusy, ValueError) as exc:  # RestoreError: not a copy, or a newer one
        return _error(str(exc))
    except OSError as exc:  # SegmentStoreError: the copy's endpoint does not answer, no bucket, credentials
        return _error(str(exc))
    _print(report, root, source.url())
    return 0


class PartialRestore(OSError):
    """Restoring failed after it began to write into the root (the cause says why)."""


async def _restore(root: Path, source: S3Location, segments: SegmentStore | None) -> RestoreReport:
    from store.maintenance.lockfile import StoreLock
    from store.replica.bucket import ReplicaBucket
    from store.replica.restore import check_marker, restore
    from store.segments.files import FileSegments
    from store.segments.options import opened

    bucket = ReplicaBucket(source, root / "cache" / "replica", flag="--from")
    await bucket.start()  # unreachable, no bucket, bad credentials: one line, and nothing written
    try:
        await check_marker(bucket)
        target = segments if segments is not None else FileSegments(root)
        async with opened(target):
            await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
            with StoreLock.acquire(root, "sht store restore"):
                try:
                    return await restore(root, bucket, target)
                except OSError as exc:
                    raise PartialRestore() from exc
    finally:
        await bucket.close()


def _print(report: RestoreReport, root: Path, source: str) -> None:
    print(f"restored {report.segments} segments ({report.bytes / 2**20:.1f} MiB) and {report.events} events "
          f"({report.snapshots} snapshots) from {source} into {root} in {report.duration_s:.1f} s")
    if report.described:
        print(f"{report.described} segments had no row in the copy: described from their MP4 (node and "
              "received time may differ)")
    for line in report.skipped:
        print(f"skipped: {line}")
    print(f"start it with: sht store --root {root}  (a new signing key is made: make tokens anew)")
