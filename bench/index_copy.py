"""Copying a benchmark's SQLite index into PostgreSQL fast, so both backends are measured on the same rows.

The schema is the store's own (``store.index.db.Index.open`` on the URL, as ``sht store --index`` makes it). The
copied tables' indexes and unique constraints are dropped first and made again after the rows are in, from the
definitions PostgreSQL recorded for them (so they are exactly the store's), then the tables are vacuumed and
analysed, as autovacuum leaves a table that has been in use. Rows go in with ``COPY`` (psycopg's), ids included,
and each identity sequence is moved past the highest id.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TABLES = ("segments", "events", "nodes", "coverage_hours")  # what bench/store.py's build_index fills
ROWS_PER_REPORT = 2_000_000


@dataclass
class CopyTimes:
    """Seconds per step of one copy, and the rows copied per table."""

    schema_s: float = 0.0
    copy_s: float = 0.0
    indexes_s: float = 0.0
    vacuum_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    database_bytes: int = 0

    @property
    def total_s(self) -> float:
        return self.schema_s + self.copy_s + self.indexes_s + self.vacuum_s


async def _make_schema(url: str) -> None:
    from store.index.db import Index

    index = await Index.open(url)
    await index.close()


def _columns(lite: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in lite.execute(f"PRAGMA table_info({table})")]


def copy_index(sqlite_file: Path, url: str, tables: Sequence[str] = TABLES,
               progress: Callable[[str], None] = lambda _: None) -> CopyTimes:
    """Fill the (new, empty) PostgreSQL index at ``url`` with ``tables`` of the SQLite index ``sqlite_file``."""
    import psycopg

    times = CopyTimes()
    t = time.monotonic()
    asyncio.run(_make_schema(url))
    times.schema_s = time.monotonic() - t
    with psycopg.connect(url, autocommit=True) as pg, sqlite3.connect(sqlite_file) as lite:
        names = list(tables)
        constraints = pg.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), conindid::regclass::text "
            "FROM pg_constraint WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY(%s)",
            [names]).fetchall()
        backing = {index for _, _, _, index in constraints}
        indexes = [(name, definition) for name, definition in pg.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(%s)", [names]).fetchall() if name not in backing]
        for table, name, _, _ in constraints:
            pg.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            pg.execute(f'DROP INDEX "{name}"')

        t = time.monotonic()
        for table in tables:
            columns = _columns(lite, table)
            have = {row[0] for row in pg.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s", [table])}
            if set(columns) != have:
                raise RuntimeError(f"{table}: the SQLite index has columns {sorted(columns)}, the PostgreSQL one "
                                   f"{sorted(have)}; build both with this checkout's store")
            listed = ", ".join(columns)
            count = 0
            with pg.cursor() as cur, cur.copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
                for row in lite.execute(f"SELECT {listed} FROM {table}"):
                    copy.write_row(row)
                    count += 1
                    if count % ROWS_PER_REPORT == 0:
                        progress(f"{table}: {count:,} rows, {time.monotonic() - t:.0f} s")
            times.rows[table] = count
            if "id" in columns:
                pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"GREATEST((SELECT MAX(id) FROM {table}), 1))")
        times.copy_s = time.monotonic() - t

        t = time.monotonic()
        pg.execute("SET maintenance_work_mem = '1GB'")  # this session's index builds: sorts in memory
        for table, name, definition, _ in constraints:
            pg.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            pg.execute(definition)
        times.indexes_s = time.monotonic() - t
        progress(f"indexes made again in {times.indexes_s:.0f} s; vacuum and analyse…")

        t = time.monotonic()
        for table in tables:
            pg.execute(f"VACUUM ANALYZE {table}")
        times.vacuum_s = time.monotonic() - t
        row = pg.execute("SELECT pg_database_size(current_database())").fetchone()
        times.database_bytes = int(row[0]) if row else 0
    return times
