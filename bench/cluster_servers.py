"""The processes the cluster benchmark measures: ``sht store`` (any index and segment storage), and the SeaweedFS
and PostgreSQL servers behind the scale-out setups, started by sht/local_servers.py as the tests and ``sht demo
--cluster`` start them but, for PostgreSQL, with its durability on (the tests turn fsync off for speed)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from sht.local_servers import PostgresCluster, Seaweed

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


def share_key(from_root: Path, to_root: Path) -> None:
    """A second store of an index gets the first one's key files before its first start (docs/cluster.md), so the
    node tokens made in either root (``node_tokens``) are signed with the key the first store brought into the
    index, and both stores take them."""
    keys = to_root / "keys"
    keys.mkdir(parents=True, mode=0o700, exist_ok=True)
    for name in ("signing.key", "signing.pub"):
        shutil.copy2(from_root / "keys" / name, keys / name)


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


# --- SeaweedFS and PostgreSQL: sht/local_servers.py, as the tests and sht demo --cluster start them --------------

def seaweed_missing() -> str | None:
    """Why the S3 setups cannot run here, or None."""
    from sht.local_servers import seaweed_missing as why

    if (missing := why()) is not None:
        return missing
    try:
        import aiobotocore  # noqa: F401
    except ImportError:
        return "aiobotocore is not installed (python3 -m pip install -e '.[cluster]')"
    return None


@contextlib.contextmanager
def seaweed(directory: Path) -> Iterator[Seaweed]:
    """A running SeaweedFS with the tests' bucket (its defaults: no fsync per object)."""
    from sht.local_servers import running_seaweed

    with running_seaweed(directory) as server:
        yield server


def postgres_missing() -> str | None:
    from sht.local_servers import postgres_missing as why

    if (missing := why()) is not None:
        return missing
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (python3 -m pip install -e '.[cluster]')"
    from store.index import postgres  # noqa: F401 - the store's PostgreSQL index must exist on this checkout

    return None


@contextlib.contextmanager
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster, durable: fsync and synchronous_commit at their defaults (on), as a
    production index would run (the tests turn fsync off)."""
    from sht.local_servers import running_postgres

    with running_postgres(durable=True) as cluster:
        yield cluster


def postgres_pids(directory: Path) -> list[int]:
    """The postmaster's pid (its backends are its children), from its pid file."""
    try:
        return [int((directory / "data" / "postmaster.pid").read_text().split("\n", 1)[0])]
    except (OSError, ValueError):
        return []
