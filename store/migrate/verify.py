"""The end of a migration: is the target the source?

- every table's rows counted on both sides (the tokens against ROOT/keys/);
- every segment's object asked for (HEAD) and its SHA-256, the one the server verified when it was PUT, compared
  with its row's: nothing is downloaded;
- ``sht store check``'s comparison of the target's index with the target's segments (store/maintenance/check.py):
  no row without its segment, no size that differs; an object with no row that this migration PUT (its segment's
  row went from the source between two runs) is deleted, any other is reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from store.index.db import Index
from store.maintenance.check import check_store
from store.migrate import MIGRATED_FROM
from store.migrate.progress import Progress
from store.migrate.records import TABLES, key_counts
from store.migrate.source import count, segment_totals
from store.replica.bucket import ReplicaBucket
from store.segments import SegmentStore, name_of

PAGE = 512
KEPT = 1000  # problems (and notes) kept to show; past that only counted
_KEYS = ("signing_keys", "issued_tokens", "revoked_tokens")


@dataclass
class Verification:
    counts: list[tuple[str, int, int]] = field(default_factory=list)  # table, source, target
    objects_confirmed: int = 0
    orphans_removed: int = 0
    problems: list[str] = field(default_factory=list)  # the first KEPT
    problem_count: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, line: str) -> None:
        self.problem_count += 1
        if len(self.problems) < KEPT:
            self.problems.append(line)

    def note(self, line: str) -> None:
        if len(self.notes) < KEPT:
            self.notes.append(line)


async def compare_counts(source: aiosqlite.Connection, target: Any, root: Path, to_bucket: bool,
                         verification: Verification) -> None:
    keys = key_counts(root)
    for table in TABLES:
        if table == "schema_version" or (table == "garbage" and to_bucket):
            continue
        wanted = keys[table] if table in _KEYS else await count(source, table)
        held = await count(target, table)
        verification.counts.append((table, wanted, held))
        if wanted != held:
            verification.problem(f"{table}: the source has {wanted:,} rows, the target {held:,}")


async def confirm_objects(index: Any, bucket: ReplicaBucket, parallel: int, say: Callable[[str], None],
                          verification: Verification) -> None:
    """HEAD the object of every row of ``index`` (the one the bucket now goes with): it must hold the SHA-256 of
    its row, as verified by the server when it was PUT."""
    total, total_bytes = await segment_totals(index)
    progress = Progress("verifying", total, total_bytes, say)
    slots = asyncio.Semaphore(parallel)

    async def one(path: str, size: int, sha256: str) -> None:
        name = name_of(path)
        if name is None:
            verification.problem(f"{path}: not a path the store writes")
            return
        async with slots:
            held = await bucket.stored(name)
        if held is None:
            verification.problem(f"{bucket.key(name)}: no such object, its row says {size} bytes")
        elif held.sha256 is None:
            verification.problem(f"{bucket.key(name)}: stored without a SHA-256 (not by migrate)")
        elif held.sha256 != sha256 or held.size != size:
            verification.problem(f"{bucket.key(name)}: holds {held.size} bytes with SHA-256 "
                                         f"{held.sha256[:16]}…, its row says {size}, {sha256[:16]}…")
        else:
            verification.objects_confirmed += 1

    after = 0
    while True:
        async with index.execute("SELECT id, path, size_bytes, sha256 FROM segments WHERE id > ? ORDER BY id LIMIT ?",
                                 (after, PAGE)) as cur:
            rows = [tuple(r) for r in await cur.fetchall()]
        if not rows:
            break
        await asyncio.gather(*(one(str(p), int(s), str(h)) for _, p, s, h in rows))
        progress.add(len(rows), sum(int(r[2]) for r in rows), 0)
        after = int(rows[-1][0])
    progress.report()


async def check_target(root: Path, index: Any, segments: SegmentStore, bucket: ReplicaBucket | None, identity: str,
                       verification: Verification) -> None:
    """``sht store check`` on the target; removes the objects this migration PUT that no row names any more."""
    report = await check_store(root, Index(index), segments=segments)
    ours = quote(identity, safe=":/")
    for problem in report.problems:
        name = name_of(problem.path)
        if problem.kind == "orphan" and bucket is not None and name is not None:
            held = await bucket.stored(name)
            if held is not None and held.metadata.get(MIGRATED_FROM) == ours:
                await bucket.delete_many([name])  # its row went from the source between two runs of migrate
                verification.orphans_removed += 1
                continue
            verification.problem(f"{bucket.key(name)}: an object no row names, not put there by this "
                                         "migration")
        elif problem.kind == "orphan":
            verification.note(f"{problem.path}: no row names this file, in the old index either (`sht store "
                                      "check --repair` with the new --index indexes it)")
        elif problem.kind == "temporary":
            verification.note(f"{problem.path}: a half-written file a crash left (the store deletes it at "
                                      "its start)")
        else:
            verification.problem(f"{problem.path}: {problem.detail}")
