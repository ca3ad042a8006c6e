"""Stores on a PostgreSQL index: ingest while the server is away (refused with retry, taken once it is back), two
stores taking the same segment at once (one row, both acknowledged), and ``sht store --index`` from the command
line (flags checked, a server out of reach said in one line, prune and check on the shared index)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shared.protocol.ingest import Ack, EventRecord, Refusal, SegmentHeader, sha256_hex
from store.index.db import Index
from store.ingest.events import ingest_event
from store.ingest.writer import Ingestor
from store.maintenance.lease import MAINTENANCE_LOCK_KEY
from store.nodes.control_link import ControlLinks
from store.serve.server import StoreServer
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster, running_postgres
from tests.store.real_segments import real_mp4

START = 1_764_165_166_000_000


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """This module stops and starts its cluster: one of its own, not the run's shared one (tests/servers.py)."""
    with running_postgres() as cluster:
        yield cluster


def header(data: bytes, start: int = START, frames: int = 1) -> SegmentHeader:
    return SegmentHeader(node="node0", camera="cam0", start_us=start, end_us=start + 1_000_000, frames=frames,
                         bytes=len(data), sha256=sha256_hex(data))


async def test_ingest_is_refused_with_retry_while_postgres_is_away_and_taken_after(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    index = await Index.open(url)
    try:
        ingestor, data = Ingestor(tmp_path, index), real_mp4()
        postgres.stop("immediate")
        try:
            reply = await ingestor.ingest(header(data), memoryview(data))
            assert isinstance(reply, Refusal) and reply.retry and reply.code == "index-unavailable"
            assert "cannot reach its index" in reply.message and ingestor.stats.refused == 1
            with pytest.raises(OSError, match="out of reach"):  # events: the session refuses them the same way
                await ingest_event(index.conn, EventRecord("node0", "cam0", START, START + 1, "motion", 0.5))
        finally:
            postgres.start()
        assert await ingestor.ingest(header(data), memoryview(data)) == Ack(f"cam0-{START}")
        assert committed_rows(url, "SELECT camera, start_us FROM segments") == [("cam0", START)]
    finally:
        await index.close()


async def test_two_stores_taking_one_segment_at_once_keep_one_row_and_both_ack(
        tmp_path: Path, postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres.create_database()
    a, b = await Index.open(url), await Index.open(url)
    try:
        data = real_mp4()
        store_a, store_b = Ingestor(tmp_path / "a", a), Ingestor(tmp_path / "b", b)
        assert await store_a.ingest(header(data), memoryview(data)) == Ack(f"cam0-{START}")
        # B looked before A's row was there (the race): its own insert then meets UNIQUE (camera, start_us).
        looked = []

        async def not_yet(camera: str, start_us: int):  # noqa: ANN202 - Index.find_segment's shape
            looked.append(start_us)
            return None if len(looked) == 1 else await Index.find_segment(b, camera, start_us)

        monkeypatch.setattr(b, "find_segment", not_yet)
        assert await store_b.ingest(header(data), memoryview(data)) == Ack(f"cam0-{START}", duplicate=True)
        other = real_mp4(2)  # other bytes under the same identity: refused, never a second row
        looked.clear()
        reply = await store_b.ingest(header(other, frames=2), memoryview(other))
        assert isinstance(reply, Refusal) and reply.code == "conflict" and not reply.retry
        assert committed_rows(url, "SELECT COUNT(*) FROM segments") == [(1,)]
    finally:
        await a.close()
        await b.close()


def sht(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


def test_the_command_line_checks_index_and_says_when_postgres_is_out_of_reach(tmp_path: Path) -> None:
    done = sht("store", "--root", str(tmp_path), "--index", "mysql://db/cctv", "--detect", "off")
    assert done.returncode == 2 and "sqlite:PATH or postgresql://" in done.stderr
    with_password = "postgresql://sht:s3cret@127.0.0.1:1/cctv"  # nothing listens on port 1
    done = sht("store", "--root", str(tmp_path), "--index", with_password, "--detect", "off", "--port", "0")
    assert done.returncode == 2 and "cannot reach the index at postgresql://sht:***@127.0.0.1:1/cctv" in done.stderr
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr
    for command in ("rebuild-index", "backup"):
        extra = ("-o", str(tmp_path / "copy")) if command == "backup" else ()
        done = sht("store", "--index", with_password, command, "--root", str(tmp_path), *extra)
        assert done.returncode == 2 and "for a PostgreSQL index" in done.stderr, done.stderr


def test_prune_and_check_work_on_the_shared_index(tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.create_database()

    async def fill() -> None:
        index = await Index.open(url)
        try:
            ingestor = Ingestor(tmp_path, index)
            for k in range(3):
                data = real_mp4()
                assert isinstance(await ingestor.ingest(header(data, START + k * 1_000_000), memoryview(data)), Ack)
        finally:
            await index.close()

    asyncio.run(fill())
    done = sht("store", "check", "--root", str(tmp_path), "--index", url)
    assert done.returncode == 0 and "3 rows" in done.stdout, done.stdout + done.stderr
    with psycopg.connect(url, autocommit=True) as running_store:  # a store holding the maintenance lease
        running_store.execute("SELECT pg_advisory_lock(%s)", (MAINTENANCE_LOCK_KEY,))
        done = sht("store", "prune", "--root", str(tmp_path), "--index", url, "--max-age", "1d")
        assert done.returncode == 2 and "holds its maintenance lease" in done.stderr, done.stderr
    assert committed_rows(url, "SELECT COUNT(*) FROM segments") == [(3,)]
    done = sht("store", "prune", "--root", str(tmp_path), "--index", url, "--max-age", "1d")  # all are older
    assert done.returncode == 0 and "deleted 3 segments" in done.stdout, done.stdout + done.stderr
    assert committed_rows(url, "SELECT COUNT(*) FROM segments") == [(0,)]
    assert not list((tmp_path / "segments").rglob("*.mp4"))
    done = sht("store", "check", "--root", str(tmp_path), "--index", "sqlite:" + str(tmp_path / "none.sqlite3"))
    assert done.returncode == 2 and "no index at" in done.stderr and "--index right?" in done.stderr


async def test_closing_the_server_waits_for_its_cluster_rounds_to_end(
        tmp_path: Path, postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store closes its index right after its server: a cluster round (fleet read, refresh, settings) cancelled
    mid-statement must have ended first, not be left running its cleanup on a closed connection."""
    ended: list[str] = []

    async def round_in_a_statement() -> None:
        try:
            await asyncio.Event().wait()  # a statement the server has not answered yet
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # its cancellation still has work to do: the rollback, the connection's state
            ended.append("after its cleanup")
            raise

    monkeypatch.setattr(ControlLinks, "cluster_tasks", lambda self: [("slow-round", 0.0, round_in_a_statement)])
    index = await Index.open(postgres.create_database())
    server = StoreServer(Ingestor(tmp_path, index), index)
    try:
        await server.start("127.0.0.1", 0)
        await asyncio.sleep(0.1)  # the round is in its statement
        await server.close()
        assert ended == ["after its cleanup"]
    finally:
        await index.close()
