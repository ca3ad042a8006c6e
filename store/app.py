"""Starts and stops the store: index, crash cleanup, server."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from pathlib import Path

from shared.fsutil import remove_temporaries
from shared.security import SecurityOptions
from store.admin.keys import KeyStore
from store.index import index_path
from store.index.db import Index
from store.ingest.writer import Ingestor
from store.maintenance.coverage import CoverageTask
from store.maintenance.janitor import CacheJanitor
from store.maintenance.lockfile import StoreLock
from store.maintenance.retention import RetentionPolicy, RetentionTask
from store.media.budget import MediaLimits
from store.serve.server import StoreServer

log = logging.getLogger(__name__)


class Store:
    def __init__(self, root: Path, policy: RetentionPolicy | None = None,
                 security: SecurityOptions | None = None, node_ca: str | None = None,
                 media: MediaLimits | None = None) -> None:
        self.root = root
        self.media = media or MediaLimits()  # temporary budgets and the thumbnail cache's size
        self.janitor: CacheJanitor | None = None
        self.node_ca = node_ca  # CA file for nodes' TLS certificates (the relay connects to them)
        self.policy = policy or RetentionPolicy()
        self.security = security or SecurityOptions()
        self.index: Index | None = None
        self.server: StoreServer | None = None
        self.retention: RetentionTask | None = None
        self.coverage: CoverageTask | None = None
        self.port: int | None = None
        self._lock: StoreLock | None = None

    async def start(self, host: str, port: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # One store per root; rebuild-index and check --repair refuse while it is held.
        self._lock = StoreLock.acquire(self.root)
        for leftover in await asyncio.to_thread(remove_temporaries, self.root / "segments"):
            log.warning("removed a half-written file left by a crash: %s", leftover)
        # Clips left by exports that never finished (a crash, a client gone mid-export) are only cache.
        await asyncio.to_thread(shutil.rmtree, self.root / "cache" / "exports", True)
        await asyncio.to_thread(remove_temporaries, self.root / "cache" / "thumbs")
        self.index = await Index.open(index_path(self.root))
        ingestor = Ingestor(self.root, self.index)
        # Its own connection; holds the Ingestor's per-segment locks while deleting.
        self.retention = RetentionTask(self.root, self.policy, locks=ingestor.segment_locks)
        await self.retention.start()
        self.coverage = CoverageTask(self.root)  # timeline summaries, on its own connection
        await self.coverage.start()
        ingestor.hooks = self.retention
        keys = KeyStore(self.root)
        verifier = await asyncio.to_thread(keys.verifier)  # creates the signing key on first start
        if not self.security.auth:
            log.warning("authentication is OFF: anyone who reaches this port can read and write footage")
        self.server = StoreServer(ingestor, self.index, self.security.access(verifier), keys,
                                  self.security.server_ssl(), self.node_ca, self.media)
        media = self.server.api.media
        await asyncio.to_thread(media.thumbs.trim)  # a --thumb-cache smaller than what the disk holds
        # While running, what abandoned work left in ROOT/cache goes after a few minutes.
        self.janitor = CacheJanitor(media.exports_dir, media.thumbs.root, lambda: media.active)
        self.janitor.start()
        self.port = await self.server.start(host, port)
        log.info("store serving on port %d, root %s", self.port, self.root)

    async def stop(self) -> None:
        if self.janitor is not None:
            await self.janitor.stop()
        if self.server is not None:
            await self.server.close()
        if self.retention is not None:
            await self.retention.stop()
        if self.coverage is not None:
            await self.coverage.stop()
        if self.index is not None:
            await self.index.close()
        if self._lock is not None:
            self._lock.release()


async def run_store(root: Path, host: str, port: int, policy: RetentionPolicy | None = None,
                    security: SecurityOptions | None = None, node_ca: str | None = None,
                    media: MediaLimits | None = None) -> None:
    store = Store(root, policy, security, node_ca, media)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await store.start(host, port)
    await stop.wait()
    await store.stop()
