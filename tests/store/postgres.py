"""A real PostgreSQL for tests: sht/local_servers.py's throwaway cluster (Debian's ``postgresql`` package, its
``initdb`` and ``postgres``) in a temporary directory on a free loopback port, trusted connections only from
127.0.0.1, fsync off, removed afterwards. The demo (``sht demo --cluster``) and ``just bench cluster`` start theirs
with the same code.

``initdb`` and ``postgres`` refuse to run as root: as root they run as the ``postgres`` user Debian's package makes,
and the directory (outside pytest's root-only temporary tree) is that user's. Missing binaries fail the test with
how to install them (never a skip: CI must run these), unless ``SHT_ALLOW_MISSING_SERVERS=1`` asks for a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from sht import local_servers
from sht.local_servers import SUPERUSER, MissingServer, PostgresCluster, free_port

__all__ = ["INSTALL_HINT", "START_TIMEOUT_S", "SUPERUSER", "PostgresCluster", "free_port", "postgres_bindir",
           "running_postgres"]

START_TIMEOUT_S = local_servers.PG_START_TIMEOUT_S
INSTALL_HINT = (f"{local_servers.POSTGRES_HINT}; .ci/run installs it when missing. Set "
                "SHT_ALLOW_MISSING_SERVERS=1 to skip these tests instead")


def _missing(why: str) -> NoReturn:
    if os.environ.get("SHT_ALLOW_MISSING_SERVERS") == "1":
        pytest.skip(why)
    pytest.fail(why)


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory, or a failure saying how to install it."""
    try:
        return local_servers.postgres_bindir()
    except MissingServer:
        _missing(INSTALL_HINT)


@contextmanager
def running_postgres() -> Iterator[PostgresCluster]:
    why = local_servers.postgres_missing()
    if why is not None:
        _missing(why if why != local_servers.POSTGRES_HINT else INSTALL_HINT)
    with local_servers.running_postgres() as cluster:
        yield cluster
