"""The target's markers: what makes a second run of migrate take up its own unfinished copy, and refuse a target that
holds anything else.

- The index: a ``store_migration`` row (made here, on the target only: the store itself never reads it) naming the
  source (``HOST:ROOT``), the bucket the segments went to, and when the copy began and finished. An index without
  that row must be empty: no table of store/index/schema.sql may hold a row (a key made by ``sht token create
  --index`` included: the source's tokens would not be valid there).
- The bucket: ``_sht/migration.json`` below the prefix, with the same facts. A prefix without it must hold no
  object (``_sht/`` and ``_quarantine/``, the store's own, aside).

Each is written before anything else goes there, so a run killed at any point leaves a target the next run knows.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from shared.clock import now_us
from store.index.db import transaction
from store.migrate import BUCKET_MARKER, FORMAT, MARKER_TABLE, MigrateError, MigrationUnfinished
from store.migrate.records import TABLES
from store.migrate.source import count
from store.replica.bucket import ReplicaBucket

NEW, RESUME, DONE = "new", "resume", "done"
_RESERVED = ("_sht/", "_quarantine/")
_EMPTY_HOW = "give migrate an empty database (e.g. createdb -O sht cctv2) or the one an unfinished migrate of this " \
             "store left"


async def check_database(url: str, where: str) -> None:
    """Before the store's schema is made there: a database holding tables that are not the store's is someone
    else's (``MigrateError``); nothing is written to it. ``IndexUnavailable`` when it cannot be reached."""
    from store.index.dialect import statements
    from store.index.location import IndexUnavailable
    from store.index.migrations import schema_text

    try:
        import psycopg
    except ImportError as exc:
        raise IndexUnavailable(f"--to-index postgresql://... needs psycopg ({exc}): pip install 'sht-cctv[cluster]'"
                               ) from None

    ours = {m.group(1) for stmt in statements(schema_text())
            if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", stmt))} | {MARKER_TABLE}
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10, autocommit=True) as conn:
            cur = await conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                     "current_schema()")
            tables = {str(r[0]) for r in await cur.fetchall()}
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()).replace(url, where)
        raise IndexUnavailable(f"cannot reach the index at {where}: {reason}; is the server up, and are --to-index's "
                               "host, port, user, password and database right?") from None
    others = sorted(tables - ours)
    if others:
        raise MigrateError(f"the database at {where} holds tables that are not a store's ({', '.join(others[:5])}"
                           f"{', ...' if len(others) > 5 else ''}): {_EMPTY_HOW}")


async def claim_index(conn: Any, where: str, identity: str, segments: str) -> str:
    """NEW (the index was empty: marked as this migration's now), RESUME or DONE; ``MigrateError`` for an index
    holding anything else. ``where``: the index's URL without its password; ``segments``: the bucket's URL, or ''
    when the segments stay where they are."""
    async with conn.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_name = ?", (MARKER_TABLE,)) as cur:
        found = await cur.fetchone()
    marks: list[tuple[Any, ...]] = []
    if found is not None and int(found[0]):
        async with conn.execute(f"SELECT source, segments, finished_us FROM {MARKER_TABLE}") as cur:
            marks = [tuple(r) for r in await cur.fetchall()]
    if marks:
        source, was_to, finished = marks[0]
        if len(marks) > 1 or source != identity:
            raise MigrateError(f"the index at {where} holds a migration of {source}, not of this store ({identity}): "
                               f"{_EMPTY_HOW}")
        if was_to != segments:
            raise MigrateError(f"this store's migration into {where} was begun with "
                               f"{('--to-segments ' + was_to) if was_to else 'its segments left in place'}: run "
                               "migrate again with the same --to-segments")
        return DONE if finished is not None else RESUME
    held = {table: n for table in TABLES if table != "schema_version" and (n := await count(conn, table))}
    if held:
        what = ", ".join(f"{n:,} {table}" for table, n in held.items())
        raise MigrateError(f"the index at {where} is not empty (it holds {what}): {_EMPTY_HOW}")
    async with transaction(conn) as c:
        await c.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (source TEXT PRIMARY KEY, segments TEXT NOT "
                        "NULL, started_us BIGINT NOT NULL, finished_us BIGINT)")
        await c.execute(f"INSERT INTO {MARKER_TABLE} (source, segments, started_us) VALUES (?, ?, ?)",
                        (identity, segments, now_us()))
    return NEW


async def refuse_if_migrating(conn: Any, where: str) -> None:
    """``MigrationUnfinished`` when a migration into this index has begun and not finished (killed, stopped by
    --stop-after, or not complete): its next run deletes the rows the source does not have, with their objects, so
    what a store recorded there meanwhile would be lost. The store calls it at start."""
    async with conn.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_name = ?", (MARKER_TABLE,)) as cur:
        found = await cur.fetchone()
    if found is None or not int(found[0]):
        return
    async with conn.execute(f"SELECT source FROM {MARKER_TABLE} WHERE finished_us IS NULL") as cur:
        unfinished = await cur.fetchone()
    if unfinished is not None:
        raise MigrationUnfinished(f"the index at {where} is the target of an unfinished `sht store migrate` of "
                                  f"{unfinished[0]}, whose next run would delete what a store records there now; "
                                  "run the same migrate again until it says the copy is complete (meanwhile the old "
                                  "store runs on its own root), then start this store")


async def finish_index(conn: Any, identity: str) -> None:
    async with transaction(conn) as c:
        await c.execute(f"UPDATE {MARKER_TABLE} SET finished_us = ? WHERE source = ?", (now_us(), identity))


async def claim_bucket(bucket: ReplicaBucket, identity: str, index: str) -> str:
    """As ``claim_index``, for the bucket's prefix; ``index``: where the rows go (its URL without the password, or
    'unchanged')."""
    marker = await _read_marker(bucket)
    if marker is not None:
        if marker.get("source") != identity:
            raise MigrateError(f"{bucket.description} holds a migration of {marker.get('source')}, not of this store "
                               f"({identity}): give --to-segments an empty prefix")
        if marker.get("index") != index:
            raise MigrateError(f"this store's migration into {bucket.description} was begun with the index going to "
                               f"{marker.get('index')}: run migrate again with the same --to-index")
        return DONE if marker.get("finished_us") is not None else RESUME
    async for key, _ in bucket.keys_below(""):
        if not key.startswith(_RESERVED):
            raise MigrateError(f"{bucket.description} already holds objects (e.g. {bucket.key(key)}): migrate fills "
                               "an empty prefix only; give --to-segments another prefix (s3://BUCKET/PREFIX?...) or "
                               "empty this one")
    await _write_marker(bucket, {"format": FORMAT, "source": identity, "index": index, "started_us": now_us(),
                                 "finished_us": None})
    return NEW


async def finish_bucket(bucket: ReplicaBucket) -> None:
    marker = await _read_marker(bucket)
    assert marker is not None, "the bucket's marker went away during the migration"
    await _write_marker(bucket, marker | {"finished_us": now_us()})


async def _read_marker(bucket: ReplicaBucket) -> dict[str, Any] | None:
    try:
        data, _ = await bucket.get_object(BUCKET_MARKER)
    except FileNotFoundError:
        return None
    try:
        marker = json.loads(data)
        if not isinstance(marker, dict) or not isinstance(marker.get("format"), int):
            raise ValueError("not an object with a format")
    except ValueError as exc:
        raise MigrateError(f"{bucket.key(BUCKET_MARKER)} at {bucket.description} is not migrate's marker ({exc}): "
                           "give --to-segments an empty prefix") from None
    if marker["format"] > FORMAT:
        raise MigrateError(f"{bucket.description} holds a migration by a newer sht (format {marker['format']}): "
                           "finish it with that sht")
    return marker


async def _write_marker(bucket: ReplicaBucket, marker: dict[str, Any]) -> None:
    data = json.dumps(marker, sort_keys=True).encode()
    await bucket.put_object(BUCKET_MARKER, data, hashlib.sha256(data).hexdigest(), "application/json")
