"""The index on a real PostgreSQL: the same schema as SQLite's, sqlite3's transaction meaning, several stores
preparing one index at once, a server restart, and the embedded default never loading psycopg."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shared.protocol.ingest import SegmentHeader
from store.index.db import Index, transaction
from store.index.location import IndexUnavailable, check_index_url, redacted
from store.index.migrations import SCHEMA_VERSION
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster, running_postgres

T = 1_800_000_000_000_000


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """This module stops and starts its cluster: one of its own, not the run's shared one (tests/servers.py)."""
    with running_postgres() as cluster:
        yield cluster


def segment(start: int, camera: str = "cam0") -> SegmentHeader:
    return SegmentHeader(node="node0", camera=camera, start_us=start, end_us=start + 10_000_000, frames=150,
                         bytes=1000, sha256="0" * 64)


def sqlite_schema(path: Path) -> dict[str, list[tuple[str, bool, str | None, bool]]]:
    """table -> [(column, not null, default, in the primary key)] in order."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [(name, bool(notnull) or bool(pk), default, bool(pk))
                    for _, name, _, notnull, default, pk in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def postgres_schema(url: str) -> dict[str, list[tuple[str, bool, str | None, bool]]]:
    rows = committed_rows(url, """
        SELECT c.table_name, c.column_name, c.is_nullable = 'NO', c.column_default,
               EXISTS (SELECT 1 FROM information_schema.key_column_usage k
                       JOIN information_schema.table_constraints tc ON tc.constraint_name = k.constraint_name
                       WHERE tc.constraint_type = 'PRIMARY KEY' AND k.table_name = c.table_name
                       AND k.column_name = c.column_name)
        FROM information_schema.columns c WHERE c.table_schema = 'public' ORDER BY c.table_name, c.ordinal_position""")
    schema: dict[str, list[tuple[str, bool, str | None, bool]]] = {}
    for table, column, notnull, default, pk in rows:
        schema.setdefault(table, []).append((column, notnull, default, pk))
    return schema


async def test_the_same_tables_columns_constraints_and_indexes_as_sqlite(tmp_path: Path,
                                                                        postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    await (await Index.open(url)).close()
    await (await Index.open(tmp_path / "index.sqlite3")).close()
    lite, pg = sqlite_schema(tmp_path / "index.sqlite3"), postgres_schema(url)
    assert sorted(lite) == sorted(pg)
    for table, columns in lite.items():
        assert [c[0] for c in pg[table]] == [c[0] for c in columns], table  # names, in order
        assert [c[1] for c in pg[table]] == [c[1] for c in columns], table  # NOT NULL
        assert [c[3] for c in pg[table]] == [c[3] for c in columns], table  # primary key
        for (name, _, lite_default, _), (_, _, pg_default, _) in zip(columns, pg[table], strict=True):
            if lite_default is not None:  # '' and 0: PostgreSQL shows ''::text
                assert pg_default is not None and pg_default.split("::")[0] == lite_default, (table, name)
    import sqlite3

    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        lite_indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                   "AND name NOT LIKE 'sqlite_autoindex%'")}
    pg_indexes = {r[0] for r in committed_rows(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                                                    "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'")}
    assert lite_indexes == pg_indexes
    # Both identity keys (segments, events...) and UNIQUE (camera, start_us): a resend is recognised by it.
    assert committed_rows(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


async def test_transactions_mean_what_they_mean_on_sqlite(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    index = await Index.open(url)
    try:
        # A change outside a transaction begins one: invisible to others until commit, gone with a rollback.
        cur = await index.conn.execute("INSERT INTO events (camera, node, start_us, end_us, kind, score) "
                                       "VALUES ('cam0', 'node0', ?, ?, 'motion', 0.5)", (T, T + 1))
        assert cur.lastrowid == 1 and cur.rowcount == 1
        async with index.conn.execute("SELECT COUNT(*) FROM events") as seen:
            assert await seen.fetchone() == (1,)  # its own connection sees it, as on SQLite
        assert committed_rows(url, "SELECT COUNT(*) FROM events") == [(0,)]
        await index.conn.rollback()
        assert committed_rows(url, "SELECT COUNT(*) FROM events") == [(0,)]
        await index.insert_segment(segment(T), "segments/cam0/a.mp4", T)
        await index.insert_segment(segment(T + 10_000_000), "segments/cam0/b.mp4", T)
        assert committed_rows(url, "SELECT COUNT(*), SUM(size_bytes) FROM segments") == [(2, 2000)]
        totals = await index.camera_totals()
        assert totals["cam0"]["bytes"] == 2000 and type(totals["cam0"]["bytes"]) is int  # not Decimal
        # A failed statement inside transaction() undoes the whole transaction.
        with pytest.raises(psycopg.errors.UniqueViolation):
            async with transaction(index.conn) as conn:
                await conn.execute("UPDATE segments SET frames = 1")
                columns = ("camera, node, start_us, end_us, frames, size_bytes, sha256, codec, width_px, height_px, "
                           "path, received_us")
                await conn.execute(f"INSERT INTO segments ({columns}) SELECT {columns} FROM segments")  # duplicates
        assert committed_rows(url, "SELECT DISTINCT frames FROM segments") == [(150,)]
        cur = await index.conn.execute("UPDATE events SET locked = 1 WHERE id = 12345")
        assert cur.rowcount == 0
        await index.conn.commit()
        # Row values, BETWEEN, the recursive skip scan, PRAGMAs (ignored): what the store's queries use.
        async with index.conn.execute("SELECT COUNT(*) FROM segments WHERE (start_us, id) > (?, ?)", (T, 1)) as c:
            assert await c.fetchall() == [(1,)]
        await index.conn.execute("PRAGMA cache_size = -65536")
    finally:
        await index.close()


async def test_stores_starting_together_prepare_one_index_once(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    indexes = await asyncio.gather(*(Index.open(url) for _ in range(4)))
    for index in indexes:
        await index.close()
    assert committed_rows(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


async def test_an_index_from_a_newer_store_is_refused_without_its_password(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    await (await Index.open(url)).close()
    postgres.psql("UPDATE schema_version SET version = 99", url.rsplit("/", 1)[1])
    with_password = url.replace("postgres@", "postgres:s3cret@")  # trust auth: any password is let in
    with pytest.raises(RuntimeError, match="schema version 99") as refused:
        await Index.open(with_password)
    assert "s3cret" not in str(refused.value) and "postgres:***@" in str(refused.value)


async def test_a_restarted_server_is_reconnected_to(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    index = await Index.open(url)
    try:
        await index.insert_segment(segment(T), "segments/cam0/a.mp4", T)
        postgres.stop("immediate")
        with pytest.raises(IndexUnavailable, match="out of reach"):
            await index.insert_segment(segment(T + 10_000_000), "segments/cam0/b.mp4", T)
        with pytest.raises(IndexUnavailable):
            await index.segments("cam0")
        postgres.start()
        await index.insert_segment(segment(T + 10_000_000), "segments/cam0/b.mp4", T)
        assert len(await index.segments("cam0")) == 2
    finally:
        await index.close()


async def test_while_the_server_is_down_queries_fail_at_once_and_the_first_one_after_it_is_back_works(
        postgres: PostgresCluster) -> None:
    """A pool that backs off its reconnection (psycopg_pool: 1 s doubling) would make each query wait its whole
    timeout during the outage, and the first ones after it fail too."""
    url = postgres.create_database()
    index = await Index.open(url)
    try:
        await index.insert_segment(segment(T), "segments/cam0/a.mp4", T)
        assert len(await index.segments("cam0")) == 1  # a query connection made and kept
        postgres.stop("immediate")
        try:
            for _ in range(4):
                began = time.monotonic()
                with pytest.raises(IndexUnavailable, match="out of reach: .*127.0.0.1"):
                    await index.segments("cam0")
                assert time.monotonic() - began < 1.0
                await asyncio.sleep(1)
        finally:
            postgres.start()
        assert len(await index.segments("cam0")) == 1
        await index.insert_segment(segment(T + 10_000_000), "segments/cam0/b.mp4", T)
        assert len(await index.segments("cam0")) == 2
    finally:
        await index.close()


def test_urls_are_checked_and_passwords_kept_out_of_messages() -> None:
    assert check_index_url("sqlite:/srv/index.sqlite3") == "sqlite:/srv/index.sqlite3"
    assert check_index_url("postgresql://sht:pw@db.lan:5432/cctv")
    for bad, says in [("sqlite:", "needs a file"), ("mysql://db/x", "sqlite:PATH or postgresql://"),
                      ("postgresql://db.lan", "name the database"), ("postgresql:///cctv", "name the server"),
                      ("postgresql://db.lan:x/cctv", "not a number")]:
        with pytest.raises(ValueError, match=says):
            check_index_url(bad)
    assert redacted("postgresql://sht:pw@db.lan:5432/cctv") == "postgresql://sht:***@db.lan:5432/cctv"
    assert redacted("postgresql://sht@db.lan/cctv") == "postgresql://sht@db.lan/cctv"


def test_the_embedded_default_never_loads_psycopg(tmp_path: Path) -> None:
    code = ("import asyncio, sys; from pathlib import Path; from store.index.db import Index; import store.app; "
            f"asyncio.run(Index.open(Path({str(tmp_path / 'i.sqlite3')!r}))); "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "store.app" in out and not {m for m in out if m.split(".")[0] in ("psycopg", "psycopg_pool")}
