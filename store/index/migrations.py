"""Schema versions of the index and the upgrades between them.

``schema.sql`` is the single description of the current schema; every statement in it is
``CREATE … IF NOT EXISTS``, so running it on an older index adds the new tables and
indexes. New columns of an existing table cannot come that way: they are added first
(``ALTER TABLE … ADD COLUMN``, idempotent, so a crash between it and the version bump is
harmless), since schema.sql's indexes may name them. An upgrade then only fills what is new,
in the same transaction that records the new version. An index from a newer store is
refused, never guessed at.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from store.index.coverage_marks import MARK_ALL_SQL
from store.index.dialect import column_for_postgres, schema_for_postgres

if TYPE_CHECKING:
    from store.index.postgres import PostgresConnection

SCHEMA_VERSION = 5
# version -> (next version, SQL that fills what that version added)
UPGRADES: dict[int, tuple[int, str]] = {
    # 1 -> 2: garbage (retention deletes files after the rows), coverage_hours (timeline summaries, all dirty).
    1: (2, MARK_ALL_SQL),
    # 2 -> 3: events' open and label columns (EVENT_COLUMNS_3), event_labels, event_snapshots. Nothing to fill:
    # old events are closed (open 0) and never analysed (labels NULL).
    2: (3, "SELECT 1"),
    # 3 -> 4: what stores sharing an index tell each other about the fleet (NODE_COLUMNS_4) and settings
    # (SETTINGS_COLUMNS_4). Nothing to fill: NULL is "no store has written it", as on a new index.
    3: (4, "SELECT 1"),
    # 4 -> 5: each segment's shape (SEGMENT_COLUMNS_5, store/playback/segment_shape.py): NULL is "not known yet",
    # and playback fills a row's shape from its segment's table the first time it reads it; and each hour's
    # playback summary (COVERAGE_COLUMNS_5): every hour dirty, so the store summarises them again in the
    # background (timelines read segments meanwhile, as after any upgrade that marks them).
    4: (5, MARK_ALL_SQL),
}
# Columns version 3 added to events, in schema.sql's order (ADD COLUMN appends: the same order as a new index).
EVENT_COLUMNS_3 = (
    ("open", "INTEGER NOT NULL DEFAULT 0"), ("label", "TEXT"), ("label_score", "REAL"), ("label_x", "REAL"),
    ("label_y", "REAL"), ("label_w", "REAL"), ("label_h", "REAL"), ("labels", "TEXT"),
)
# Columns version 4 added to nodes and settings (store/nodes/fleet_table.py writes them on a shared index).
NODE_COLUMNS_4 = (("state", "TEXT"), ("state_changed_us", "INTEGER"), ("link_store", "TEXT"),
                  ("refreshed_us", "INTEGER"), ("health", "TEXT"))
SETTINGS_COLUMNS_4 = (("pushed_us", "INTEGER"),)
# Columns version 5 added to segments, in schema.sql's order: SHAPE_COLUMNS of store/playback/segment_shape.py.
# INTEGER is BIGINT on PostgreSQL (store/index/dialect.py): byte counts and offsets of files over 2 GiB fit.
SEGMENT_COLUMNS_5 = (("play_samples", "INTEGER"), ("play_keyframes", "INTEGER"), ("play_lead", "INTEGER"),
                     ("play_payload_bytes", "INTEGER"), ("play_data_offset", "INTEGER"), ("play_timescale", "INTEGER"),
                     ("play_last_dts", "INTEGER"), ("play_end_dts", "INTEGER"), ("play_time_runs", "INTEGER"),
                     ("play_codec", "TEXT"))
# Columns version 5 added to coverage_hours (store/playback/parts.py).
COVERAGE_COLUMNS_5 = (("playback", "TEXT"),)
# Every column added to a table after its creation, per table, in the order added.
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "events": EVENT_COLUMNS_3, "nodes": NODE_COLUMNS_4, "settings": SETTINGS_COLUMNS_4, "segments": SEGMENT_COLUMNS_5,
    "coverage_hours": COVERAGE_COLUMNS_5,
}


# pg_advisory_xact_lock key: stores starting at once against one PostgreSQL index prepare it one at a time.
SCHEMA_LOCK_KEY = 0x5348_5400_0001


def schema_text() -> str:
    return resources.files("store.index").joinpath("schema.sql").read_text()


async def prepare(conn: aiosqlite.Connection, path: Path) -> None:
    """Create what is missing, apply additive upgrades, refuse an index from a newer store."""
    for table, columns in ADDED_COLUMNS.items():
        await _add_columns(conn, table, columns)
    await conn.executescript(schema_text())
    # FULL: a committed row survives power loss, matching the fsync'd file it points at.
    await conn.execute("PRAGMA synchronous = FULL")
    await _upgrade(conn, str(path))


async def prepare_postgres(conn: PostgresConnection, where: str) -> None:
    """The same on PostgreSQL, from the same schema.sql: all in one transaction (PostgreSQL's DDL is
    transactional), under an advisory lock so that stores starting together do it once."""
    await conn.begin()
    try:
        await conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))
        for table, columns in ADDED_COLUMNS.items():
            async with conn.execute("SELECT column_name FROM information_schema.columns "
                                    "WHERE table_schema = current_schema() AND table_name = ?", (table,)) as cur:
                have = {row[0] for row in await cur.fetchall()}
            for name, decl in columns if have else ():  # none for a new index: schema.sql makes them
                if name not in have:
                    await conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {column_for_postgres(decl)}")
        for statement in schema_for_postgres(schema_text()):
            await conn.execute(statement)
        await _upgrade(conn, where)
    except BaseException:
        await conn.rollback()
        raise


async def _upgrade(conn: aiosqlite.Connection | PostgresConnection, where: str) -> None:
    """Bring schema_version up to SCHEMA_VERSION (or set it on a new index), then commit."""
    async with conn.execute("SELECT version FROM schema_version") as cur:
        row = await cur.fetchone()
    version = None if row is None else int(row[0])
    while version in UPGRADES:
        version, sql = UPGRADES[version]
        await conn.execute(sql)
        await conn.execute("UPDATE schema_version SET version = ?", (version,))
    if row is None:
        await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif version != SCHEMA_VERSION:
        await conn.rollback()
        raise RuntimeError(f"index {where} has schema version {row[0]}, this store expects {SCHEMA_VERSION}: "
                           "it was written by a newer sht-cctv; upgrade this one (pip install -U sht-cctv)")
    await conn.commit()


async def _add_columns(conn: aiosqlite.Connection, table: str, columns: tuple[tuple[str, str], ...]) -> None:
    """Add those of ``columns`` an existing ``table`` lacks (none for a new index: schema.sql makes them)."""
    async with conn.execute(f"PRAGMA table_info({table})") as cur:
        have = {row[1] for row in await cur.fetchall()}
    if not have:
        return
    for name, decl in columns:
        if name not in have:
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    await conn.commit()
