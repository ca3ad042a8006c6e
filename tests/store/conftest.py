"""Fixtures for the store's tests: a real PostgreSQL (tests/store/postgres.py) and the index URL of either backend,
so the index's tests run on SQLite (the embedded default) and on PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.store.postgres import PostgresCluster


@pytest.fixture(scope="module")
def postgres(module_postgres: PostgresCluster) -> PostgresCluster:
    """The run's PostgreSQL cluster (tests/servers.py): a new database per test, dropped after the module. A module
    that stops the cluster overrides this with one of its own (``own_postgres``, tests/store/postgres.py)."""
    return module_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def new_index_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """Makes a new empty index on each call (hypothesis examples each want their own): ``sqlite:PATH`` in a new
    temporary directory, or a new PostgreSQL database. Every test using it runs once per backend."""
    if request.param == "sqlite":
        return lambda: f"sqlite:{tmp_path_factory.mktemp('index') / 'index.sqlite3'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database


@pytest.fixture
def index_url(new_index_url: Callable[[], str]) -> str:
    """A test's index: a SQLite file or a PostgreSQL database (the test runs on both)."""
    return new_index_url()

# The run's SeaweedFS for the modules that ask for it (``seaweed``, ``s3_env``), defined once in tests/store/seaweed.py.
from tests.store.seaweed import own_seaweed, s3_env, seaweed  # noqa: E402, F401
