"""The maintenance lease (store/maintenance/lease.py) on a real PostgreSQL: one holder among the stores sharing an
index, handed on when the holder stops, given up while the server is out of reach and taken again after; retention
sweeps only where it is held."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from store.maintenance.lease import PostgresLease, SoleStore, lease_for
from store.maintenance.retention import RetentionPolicy, RetentionTask
from tests.store.postgres import PostgresCluster, running_postgres

POLL_S = 0.2


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """This module stops and starts its cluster: one of its own, not the run's shared one (tests/servers.py)."""
    with running_postgres() as cluster:
        yield cluster


async def until(predicate: Callable[[], bool], limit_s: float = 10.0) -> float:
    """Seconds until ``predicate`` holds; fails after ``limit_s``."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not predicate():
        assert loop.time() - began < limit_s, "not within the limit"
        await asyncio.sleep(0.02)
    return loop.time() - began


async def test_one_holder_at_a_time_and_the_next_takes_over_when_it_stops(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    first, second = PostgresLease(url, poll_s=POLL_S), PostgresLease(url, poll_s=POLL_S)
    await first.start()
    await second.start()
    try:
        assert first.held and not second.held  # the first to ask holds it from its start
        await asyncio.sleep(3 * POLL_S)
        assert first.held and not second.held  # and keeps it
        await first.stop()
        # on its next tries, not after a keepalive or a timeout (seconds, not one poll: CI machines are busy)
        assert await until(lambda: second.held) < 3.0
    finally:
        await first.stop()
        await second.stop()


async def test_the_holder_gives_it_up_while_the_server_is_away_and_takes_it_again(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    lease = PostgresLease(url, poll_s=POLL_S)
    await lease.start()
    try:
        assert lease.held
        postgres.stop("immediate")
        try:
            await until(lambda: not lease.held)  # no maintenance while it cannot know it is alone
        finally:
            postgres.start()
        await until(lambda: lease.held)
        assert lease.acquired == 2
    finally:
        await lease.stop()


async def test_retention_sweeps_only_in_the_store_holding_the_lease(tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    leases = [PostgresLease(url, poll_s=POLL_S) for _ in range(2)]
    tasks = [RetentionTask(tmp_path / name, RetentionPolicy(), interval_s=POLL_S, min_gap_s=0.01, index=url,
                           lease=lease) for name, lease in zip(("a", "b"), leases, strict=True)]
    for lease in leases:
        await lease.start()
    for task in tasks:
        task.root.mkdir()
        await task.start()
    try:
        await until(lambda: tasks[0].sweeps >= 2)
        assert tasks[1].sweeps == 0
        await leases[0].stop()
        await until(lambda: tasks[1].sweeps >= 1)
    finally:
        for task in tasks:
            await task.stop()
        for lease in leases:
            await lease.stop()


def test_a_store_alone_on_sqlite_always_holds_it() -> None:
    assert isinstance(lease_for(None), SoleStore) and lease_for(None).held
    assert isinstance(lease_for("sqlite:/srv/index.sqlite3"), SoleStore)
    assert isinstance(lease_for("postgresql://sht@db/cctv"), PostgresLease)
