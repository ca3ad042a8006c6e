"""The steps of a migration, in order: open the source (read-only) and the targets, claim them
(store/migrate/target.py), bring the tokens in, copy the segments, then every other table, then verify, and only
then mark it finished."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from store.index import coverage_marks
from store.index.db import Index, transaction
from store.index.location import redacted
from store.maintenance.lease import PostgresLease
from store.migrate import MigrateError
from store.migrate.records import copy_events, copy_keys, replace_table, reset_identities
from store.migrate.segments import SegmentCopier, SegmentsReport
from store.migrate.source import Source, open_source
from store.migrate.target import DONE, NEW, check_database, claim_bucket, claim_index, finish_bucket, finish_index
from store.migrate.verify import Verification, check_target, compare_counts, confirm_objects
from store.replica.bucket import ReplicaBucket
from store.segments import SegmentStore
from store.segments.files import FileSegments
from store.segments.s3 import S3Segments
from store.segments.url import S3Location


@dataclass
class MigrateOptions:
    root: Path
    to_index: str | None = None  # postgresql://...
    to_segments: S3Location | None = None
    source_segments: SegmentStore | None = None  # where the store keeps its segments now (default ROOT/segments)
    parallel: int = 8  # PUTs (and HEADs) in flight
    stop_after_s: float | None = None  # copy segments for this long, then stop (the next run goes on)


@dataclass
class MigrateReport:
    already_done: bool = False  # an earlier run finished it: nothing was done
    resumed: bool = False
    segments: SegmentsReport | None = None
    events: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    tokens: tuple[int, int] | None = None  # issued, revoked brought in (None: the store had no key)
    verification: Verification | None = None
    duration_s: float = 0.0

    @property
    def paused(self) -> bool:
        """Stopped by --stop-after with segments left: nothing after them was copied or verified."""
        return self.segments is not None and self.segments.paused


class Interrupted(MigrateError):
    """Migrate failed after it began to write into the target; what it wrote stays, for the next run."""


async def migrate(options: MigrateOptions, say: Callable[[str], None] = print) -> MigrateReport:
    started = time.monotonic()
    deadline = None if options.stop_after_s is None else started + options.stop_after_s
    source = await open_source(options.root)
    cache = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sht-migrate-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(source.close)
            report = await _migrate(options, source, cache, stack, deadline, say)
    finally:
        await asyncio.to_thread(shutil.rmtree, cache, True)
    report.duration_s = time.monotonic() - started
    return report


async def _migrate(options: MigrateOptions, source: Source, cache: Path, stack: contextlib.AsyncExitStack,
                   deadline: float | None, say: Callable[[str], None]) -> MigrateReport:
    segments = options.source_segments or FileSegments(options.root)
    if isinstance(segments, S3Segments):  # its read cache in migrate's own directory, not in the store's root
        segments = S3Segments(segments.location, cache / "source")
    await segments.start()
    stack.push_async_callback(segments.close)
    bucket = None
    if options.to_segments is not None:
        if isinstance(segments, S3Segments) and segments.location == options.to_segments:
            raise MigrateError(f"--to-segments is where the segments are already ({segments.description})")
        bucket = ReplicaBucket(options.to_segments, cache / "bucket", flag="--to-segments", noun="the target bucket")
        await bucket.start()  # unreachable, bad credentials, no bucket: SegmentStoreError, one line
        stack.push_async_callback(bucket.close)
    index = None
    where = redacted(options.to_index) if options.to_index else "unchanged"
    if options.to_index is not None:
        await check_database(options.to_index, where)  # someone else's database: refused before the schema is made
        index = await Index.open(options.to_index)  # unreachable, refused: IndexUnavailable, one line
        stack.push_async_callback(index.close)
        # No store may run on the target meanwhile (nor a second migrate): each running store tries for this lease.
        lease = PostgresLease(options.to_index)
        await lease.start()
        stack.push_async_callback(lease.stop)
        if not lease.held:
            raise MigrateError(f"a store (or another migrate) is using the index at {where}: it holds the index's "
                               "maintenance lease; stop it, migrate needs the index to itself")
    states = []
    if index is not None:
        states.append(await claim_index(index.conn, where, source.identity,
                                        options.to_segments.url() if options.to_segments else ""))
    if bucket is not None:
        states.append(await claim_bucket(bucket, source.identity, where))
    report = MigrateReport(resumed=any(s != NEW for s in states))
    if all(s == DONE for s in states):
        report.already_done = True
        return report
    try:
        await _copy(options, source, segments, index, bucket, report, deadline, say)
    except (OSError, MigrateError) as exc:
        raise Interrupted(str(exc)) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):  # refused by PostgreSQL (rights, a constraint)
            raise Interrupted(f"the index at {where} refused: {' '.join(str(exc).split())}") from exc
        raise
    return report


async def _copy(options: MigrateOptions, source: Source, segments: SegmentStore, index: Index | None,
                bucket: ReplicaBucket | None, report: MigrateReport, deadline: float | None,
                say: Callable[[str], None]) -> None:
    target = index.conn if index is not None else None
    if target is not None:
        report.tokens = await copy_keys(options.root, target)
    copier = SegmentCopier(source.conn, segments, source.identity, target=target, bucket=bucket,
                           resume=report.resumed, parallel=options.parallel, deadline=deadline, say=say)
    report.segments = await copier.run()
    if report.paused:
        return
    if target is not None:
        say("events with their labels and snapshots, nodes, settings, timeline summaries ...")
        report.events = await copy_events(source.conn, target)
        # garbage: files retention has yet to delete, in ROOT/segments; not copied to a bucket, neither are they.
        for table in ("nodes", "settings", "settings_history", *(() if bucket else ("garbage",)), "coverage_hours"):
            report.tables[table] = await replace_table(source.conn, target, table)
        if report.segments.skipped_count:  # the copied summaries count segments the target does not have
            async with transaction(target) as conn:
                await coverage_marks.mark_all(conn)
        await reset_identities(target)
    verification = report.verification = Verification()
    if target is not None:
        await compare_counts(source.conn, target, options.root, bucket is not None, verification)
    if bucket is not None:
        await confirm_objects(target if target is not None else source.conn, bucket, options.parallel, say,
                              verification)
    await check_target(options.root, target if target is not None else source.conn,
                       bucket if bucket is not None else segments, bucket, source.identity, verification)
    if verification.ok:
        if bucket is not None:
            await finish_bucket(bucket)
        if target is not None:
            await finish_index(target, source.identity)
