"""A real PostgreSQL for tests: a throwaway cluster (Debian's ``postgresql`` package, its ``initdb`` and ``pg_ctl``)
in a temporary directory on a free loopback port, trusted connections only from 127.0.0.1, removed afterwards.

``initdb`` and ``pg_ctl`` refuse to run as root: as root they run as the ``postgres`` user Debian's package makes,
and the directory (outside pytest's root-only temporary tree) is that user's. Missing binaries fail the test with
how to install them (never a skip: CI must run these), unless ``SHT_ALLOW_MISSING_SERVERS=1`` asks for a skip.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "postgres"
START_TIMEOUT_S = 60
INSTALL_HINT = ("PostgreSQL is not installed: apt-get install postgresql (Debian's PostgreSQL 15 puts initdb and "
                "pg_ctl in /usr/lib/postgresql/15/bin); .ci/run installs it when missing. Set "
                "SHT_ALLOW_MISSING_SERVERS=1 to skip these tests instead")


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory, or a failure saying how to install it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")  # other distributions, or a source build
    if on_path:
        return Path(on_path).parent
    if os.environ.get("SHT_ALLOW_MISSING_SERVERS") == "1":
        pytest.skip(INSTALL_HINT)
    pytest.fail(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """One running cluster; ``url()`` names a database in it, ``create_database()`` makes a fresh one."""

    bindir: Path
    directory: Path
    port: int
    _names = itertools.count()

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", str(START_TIMEOUT_S),
                  "-l", str(self.directory / "postgres.log"),
                  "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c max_connections=200", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: like a crash (no checkpoint); the cluster starts again on the same data."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql).stdout

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"sht_test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)


@contextmanager
def running_postgres() -> Iterator[PostgresCluster]:
    bindir = postgres_bindir()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SUPERUSER)
        except KeyError:
            pytest.fail(f"no {SUPERUSER} user to run PostgreSQL as (initdb refuses root): {INSTALL_HINT}")
    # Not under pytest's temporary tree: that is root's alone, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="sht-pg-"))
    if os.geteuid() == 0:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = PostgresCluster(bindir, directory, free_port())
    try:
        cluster._run(str(bindir / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", SUPERUSER, "--no-sync",
                     "-E", "UTF8", "--locale=C")
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # never started, or already stopped
        shutil.rmtree(directory, ignore_errors=True)
