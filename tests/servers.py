"""One PostgreSQL cluster and one SeaweedFS for the whole test run, started the first time a test asks for them
(``session_postgres``, ``session_seaweed``; tests/conftest.py makes them visible everywhere).

Each started in 1-8 s on a busy 2-core machine, and 20 modules started their own. Sharing them keeps the modules
apart all the same: each test or module makes a new database in the cluster (``create_database``) and writes
below a bucket prefix of its own (every module's prefixes start differently: ``moved``, ``race``, ``test``...).
A module that stops, kills or freezes its server (the outage and fault tests) starts its own instead
(``running_postgres``, ``running_seaweed``), so nothing it does reaches another module.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.store.postgres import PostgresCluster, running_postgres
from tests.store.seaweed import Seaweed, running_seaweed

TEST_DATABASES = "sht_test_%"  # create_database's names


@pytest.fixture(scope="session")
def session_postgres() -> Iterator[PostgresCluster]:
    """The run's PostgreSQL: make a database in it for each test or module; never stop it."""
    with running_postgres() as cluster:
        yield cluster


class EarlySeaweed:
    """The run's SeaweedFS, started in a thread as soon as the collected tests are known to need it: its start-up
    (3.5 s, or 8.5 s when its volume server's first heartbeat comes before the master's election and it waits 5 s
    for the next) then overlaps with the tests before the first that uses it."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._thread: threading.Thread | None = None
        self._server: Seaweed | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seaweed-start", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            directory = Path(tempfile.mkdtemp(prefix="sht-test-seaweed-"))
            self._stack.callback(shutil.rmtree, directory, ignore_errors=True)
            self._server = self._stack.enter_context(running_seaweed(directory))
        except BaseException as exc:  # noqa: BLE001 - raised again in the test that asks for it
            self._error = exc

    def server(self) -> Seaweed:
        self.start()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._server is not None
        return self._server

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self._stack.close()


EARLY_SEAWEED = EarlySeaweed()


def start_early(items: list[pytest.Item]) -> None:
    """Start the servers the collected tests will ask for (tests/conftest.py calls it once they are known)."""
    if any("session_seaweed" in getattr(item, "fixturenames", ()) for item in items):
        EARLY_SEAWEED.start()


@pytest.fixture(scope="session")
def session_seaweed() -> Iterator[Seaweed]:
    """The run's SeaweedFS (bucket ``BUCKET``): write below a prefix of the module's own; never kill it."""
    try:
        yield EARLY_SEAWEED.server()
    finally:
        EARLY_SEAWEED.stop()


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
