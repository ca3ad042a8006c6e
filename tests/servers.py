"""One PostgreSQL cluster and one SeaweedFS for the whole test run, started the first time a test asks for them
(``session_postgres``, ``session_seaweed``; tests/conftest.py makes them visible everywhere).

Each started in 1-8 s on a busy 2-core machine, and 20 modules started their own. Sharing them keeps the modules
apart all the same: each test or module makes a new database in the cluster (``create_database``) and writes
below a bucket prefix of its own (every module's prefixes start differently: ``moved``, ``race``, ``test``...).
A module that stops, kills or freezes its server (the outage and fault tests) starts its own instead
(``running_postgres``, ``running_seaweed``), so nothing it does reaches another module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.postgres import PostgresCluster, running_postgres
from tests.store.seaweed import Seaweed, running_seaweed

TEST_DATABASES = "sht_test_%"  # create_database's names


@pytest.fixture(scope="session")
def session_postgres() -> Iterator[PostgresCluster]:
    """The run's PostgreSQL: make a database in it for each test or module; never stop it."""
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def session_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """The run's SeaweedFS (bucket ``BUCKET``): write below a prefix of the module's own; never kill it."""
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


def databases(cluster: PostgresCluster) -> set[str]:
    """The test databases now in the cluster."""
    listed = cluster.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DATABASES}'")
    return set(listed.split())


def drop_databases(cluster: PostgresCluster, names: set[str]) -> None:
    """Drop these databases (connections left open to them too): the run's cluster does not grow with every
    module (a new database takes ~5 MB, and hypothesis examples each make one)."""
    if not names:
        return
    # One psql, one -c per statement: DROP DATABASE cannot run inside the transaction one -c of many would be.
    args = [a for name in sorted(names) for a in ("-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")]
    cluster._run(str(cluster.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                 "-p", str(cluster.port), "-U", "postgres", "-d", "postgres", *args)


@pytest.fixture(scope="module")
def module_postgres(session_postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """The run's PostgreSQL for one module: the databases the module made are dropped after it."""
    before = databases(session_postgres)
    yield session_postgres
    drop_databases(session_postgres, databases(session_postgres) - before)
