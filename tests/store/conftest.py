"""Fixtures for the store's tests: a real PostgreSQL (tests/store/postgres.py) and the index URL of either backend,
so the index's tests run on SQLite (the embedded default) and on PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.postgres import PostgresCluster, running_postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the module's tests (started in about a second, removed after)."""
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's index lives: ``sqlite:PATH`` in its temporary directory, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'index.sqlite3'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()
