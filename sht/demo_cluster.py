"""``sht demo --cluster``: two stores as one cluster, on this machine.

A throwaway PostgreSQL (the shared index) and SeaweedFS (the shared bucket), started here from
sht/local_servers.py on free loopback ports; two ``sht store`` processes on both (ports P+100 and P+101); the
demo's three nodes with two simulated cameras each, given both stores (``--store ws://A,ws://B``); the console
given both. The servers, the stores' roots and the nodes' spools live in temporary directories removed on the
way out; the logs stay in ``--root``/logs.

The tokens are made in the index, as ``sht token create --index`` makes them, before the stores start: every
store of the cluster accepts them.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from sht.demo import NODES, DemoOptions, DemoProcesses, _terminate
from sht.local_servers import (
    PostgresCluster,
    Seaweed,
    postgres_missing,
    running_postgres,
    running_seaweed,
    seaweed_missing,
)

STORES = ("store-a", "store-b")
DATABASE = "sht_demo"
CLUSTER_EXTRA = "pip install 'sht-cctv[cluster]'"
TOKEN_TTL_S = 7 * 24 * 3600


def cluster_missing() -> str | None:
    """What to install before ``sht demo --cluster`` can run (one line per part), or None."""
    missing = []
    if (pg := postgres_missing()) is not None:
        missing.append(f"PostgreSQL (the shared index): {pg}")
    if (weed := seaweed_missing()) is not None:
        missing.append(f"SeaweedFS (the shared bucket): {weed}")
    clients = []
    for module, package in (("psycopg", "psycopg"), ("aiobotocore", "aiobotocore")):
        try:
            __import__(module)
        except ImportError:
            clients.append(package)
    if clients:
        missing.append(f"the stores' clients ({', '.join(clients)}): {CLUSTER_EXTRA}")
    if not missing:
        return None
    return "needs what is not installed here:\n" + "\n".join(f"  - {m}" for m in missing)


class ClusterDemoProcesses(DemoProcesses):
    """The servers, both stores and the nodes. ``close`` stops the servers and removes the temporary tree."""

    def __init__(self, opts: DemoOptions) -> None:
        super().__init__(opts)
        self.stores: list = []  # the two sht store processes
        self.postgres: PostgresCluster | None = None
        self.seaweed: Seaweed | None = None
        self.index_url = ""
        self.tmp: Path | None = None
        self._servers = ExitStack()

    def store_port(self, i: int) -> int:
        return self.opts.store_port + i

    def store_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.store_port(i)}" for i in range(len(STORES))]

    def starting_line(self) -> str:
        o = self.opts
        return (f"starting PostgreSQL and SeaweedFS, stores on :{self.store_port(0)} and :{self.store_port(1)}, "
                f"nodes on :{o.base_port}-{o.base_port + NODES - 1} (logs in {self.logs})")

    def children(self) -> list:
        return [*((name, p) for name, p in zip(STORES, self.stores, strict=False)),
                *((f"node{i}", p) for i, p in enumerate(self.nodes))]

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        # Started here, in the main thread: their parent-death signal fires when this thread ends.
        self.tmp = Path(tempfile.mkdtemp(prefix="sht-demo-cluster-"))
        self._servers.callback(shutil.rmtree, self.tmp, True)
        self.postgres = self._servers.enter_context(
            running_postgres(die_with_parent=True, log=self.logs / "postgres.log"))
        self.index_url = self.postgres.create_database(DATABASE)
        self.seaweed = self._servers.enter_context(
            running_seaweed(self.tmp / "seaweed", die_with_parent=True, log=self.logs / "weed.log"))
        # asyncio.run in a thread of its own: start() may be called with an event loop running in this one.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, self._make_index_tokens()).result()
        for i, name in enumerate(STORES):
            self.stores.append(self._spawn(name, [
                "store", "--root", str(self.tmp / name), "--host", "127.0.0.1", "--port", str(self.store_port(i)),
                "--index", self.index_url, "--segments", self.seaweed.url(prefix="demo"),
            ], env=self.seaweed.env()))
        self.start_nodes(",".join(f"ws://127.0.0.1:{self.store_port(i)}" for i in range(len(STORES))),
                         self.tmp / "spool")

    async def _make_index_tokens(self) -> None:
        """The cluster's key is made in the index (as the first store would), and the tokens recorded there."""
        from store.admin.index_keys import IndexKeys
        from store.index.db import Index
        from store.index.location import redacted

        index = await Index.open(self.index_url)
        try:
            keys = IndexKeys(index.conn, redacted(self.index_url))
            await keys.load()
            for role in ("viewer", "admin"):
                self.tokens[role] = (await keys.issue_recorded(role, f"demo-{role}", TOKEN_TTL_S))[0]
            self.node_tokens = [(await keys.issue_recorded("node", f"node{i}", TOKEN_TTL_S))[0]
                                for i in range(NODES)]
        finally:
            await index.close()

    def ready_lines(self) -> list[str]:
        assert self.seaweed is not None
        return [f"stores {', '.join(self.store_urls())} share the index {self.index_url} and the bucket "
                f"{self.seaweed.url(prefix='demo')}; all of it is removed when the demo ends"]

    def stop(self) -> None:
        self.stop_nodes()
        _terminate(self.stores, 10.0)

    def close(self) -> None:
        self._servers.close()

    def stored_per_camera(self) -> dict[str, tuple[int, int, int]]:
        if self.postgres is None or self.postgres.process is None:
            return {}
        rows = self.postgres.psql("SELECT camera, COUNT(*), SUM(frames), SUM(size_bytes) FROM segments "
                                  "GROUP BY camera", DATABASE)
        stored = {}
        for line in rows.splitlines():
            cam, n, frames, size = line.split("|")
            stored[cam] = (int(n), int(frames), int(size))
        return stored

    def stores_summary(self, health: list[dict | None]) -> dict:
        return {url: {"segments_taken": h["ingest"]["stored"] if h else None,
                      "maintenance": bool(h and h.get("index", {}).get("maintenance"))}
                for url, h in zip(self.store_urls(), health, strict=True)}
