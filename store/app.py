"""Starts and stops the store: index, crash cleanup, server."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from shared.fsutil import remove_temporaries
from shared.label_zones import LabelZones
from shared.security import SecurityOptions
from store.admin.index_keys import IN_INDEX_MARK, IndexKeys, KeyFileError
from store.admin.keys import KeyStore, SigningKeys
from store.detect.labelling import ZoneCheck
from store.detect.service import DetectionService, DetectOptions
from store.index import index_path
from store.index.db import Index
from store.index.location import describe, redacted
from store.index.settings import load as load_settings
from store.ingest.writer import Ingestor
from store.maintenance.coverage import CoverageTask
from store.maintenance.janitor import CacheJanitor
from store.maintenance.lease import Lease, lease_for
from store.maintenance.lockfile import StoreLock
from store.maintenance.retention import RetentionPolicy, RetentionTask
from store.media.budget import MediaLimits
from store.segments import SegmentStore
from store.segments.files import FileSegments
from store.serve.server import StoreServer

if TYPE_CHECKING:
    from store.notify.options import NotifyOptions
    from store.notify.service import NotifyService
    from store.replica import ReplicaOptions
    from store.replica.task import ReplicaTask
    from store.segments.url import S3Location

log = logging.getLogger(__name__)


class Store:
    def __init__(self, root: Path, policy: RetentionPolicy | None = None,
                 security: SecurityOptions | None = None, node_ca: str | None = None,
                 media: MediaLimits | None = None, detect: DetectOptions | None = None,
                 segments: SegmentStore | None = None, index: str | None = None,
                 replica: S3Location | None = None, replica_options: ReplicaOptions | None = None,
                 notify: NotifyOptions | None = None) -> None:
        """``detect``: object detection (``sht store`` turns it on by default); None or mode off: none.
        ``segments``: where segments are stored (``sht store --segments``; default files under ROOT/segments).
        ``index``: the index URL (``sht store --index``: sqlite:PATH or postgresql://...; default
        ROOT/index.sqlite3). ``replica``: where the off-site copy goes (``sht store --replica``; none by default).
        ``notify``: webhooks and MQTT (``sht store --webhook/--mqtt``); the change feed and the outbox run always.
        """
        self.root = root
        self.index_url = index
        self.replica_location, self.replica_options = replica, replica_options
        self.replica: ReplicaTask | None = None
        self.segments: SegmentStore = segments if segments is not None else FileSegments(root)
        self.detect_options = detect or DetectOptions(mode="off")
        self.detection: DetectionService | None = None
        self.notify_options = notify
        self.notify: NotifyService | None = None  # store/notify: event changes, alerts, webhooks, MQTT
        self.media = media or MediaLimits()  # temporary budgets and the thumbnail cache's size
        self.janitor: CacheJanitor | None = None
        self.node_ca = node_ca  # CA file for nodes' TLS certificates (the relay connects to them)
        self.policy = policy or RetentionPolicy()
        self.security = security or SecurityOptions()
        self.index: Index | None = None
        self.server: StoreServer | None = None
        self.retention: RetentionTask | None = None
        self.coverage: CoverageTask | None = None
        self.lease: Lease | None = None
        self.index_keys: IndexKeys | None = None  # the cluster's tokens, on a PostgreSQL index
        self.port: int | None = None
        self._lock: StoreLock | None = None

    async def start(self, host: str, port: int) -> None:
        # First, before anything is opened: a model that does not load stops the store with nothing to undo.
        local = await self._start_local_detector()
        try:
            await self._start(host, port, local)
        except BaseException:
            # A port in use, an index from a newer store...: undo what started (its threads would keep the
            # process from exiting), then say what went wrong.
            if local is not None and self.detection is None:
                await local.close()
            await self.stop()
            raise

    async def _start_local_detector(self):  # type: ignore[no-untyped-def]
        if self.detect_options.mode != "local":
            return None
        from store.detect.runner import LocalDetector

        options = self.detect_options
        local = LocalDetector(options.model, options.labels, device=options.device, threads=options.threads)
        await local.start()  # DetectorError with the model's one-line fault
        return local

    async def _start(self, host: str, port: int, local: object) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # One store per root; rebuild-index and check --repair refuse while it is held.
        self._lock = StoreLock.acquire(self.root)
        # An S3 endpoint that does not answer, or no such bucket: SegmentStoreError, one line, before serving.
        await self.segments.start()
        for leftover in await self.segments.remove_temporaries():
            log.warning("removed a half-written file left by a crash: %s", leftover)
        # Clips left by exports that never finished (a crash, a client gone mid-export) are only cache.
        await asyncio.to_thread(shutil.rmtree, self.root / "cache" / "exports", True)
        await asyncio.to_thread(remove_temporaries, self.root / "cache" / "thumbs")
        self.index = await Index.open(self.index_url or index_path(self.root))
        if self.index.dialect == "postgresql":  # never on an index an unfinished `sht store migrate` is filling
            from store.migrate.target import refuse_if_migrating

            await refuse_if_migrating(self.index.conn, redacted(self.index_url or ""))
        # Work that must happen once among the stores sharing the index (one per SQLite index: always this one).
        self.lease = lease_for(self.index_url)
        await self.lease.start()
        ingestor = Ingestor(self.root, self.index, segments=self.segments)
        # Its own connection; holds the Ingestor's per-segment locks while deleting.
        self.retention = RetentionTask(self.root, self.policy, locks=ingestor.segment_locks, segments=self.segments,
                                       index=self.index_url, lease=self.lease)
        await self.retention.start()
        # Timeline summaries, on its own connection.
        self.coverage = CoverageTask(self.root, index=self.index_url, lease=self.lease)
        await self.coverage.start()
        ingestor.hooks = self.retention
        keys = await self._signing_keys()
        verifier = await asyncio.to_thread(keys.verifier)  # files: creates the signing key on first start
        if not self.security.auth:
            log.warning("authentication is OFF: anyone who reaches this port can read and write footage")
        self.server = StoreServer(ingestor, self.index, self.security.access(verifier), keys,
                                  self.security.server_ssl(), self.node_ca, self.media)
        self.server.lease = self.lease  # /health says whether this store holds it
        media = self.server.api.media
        media.segments = self.segments  # thumbnails and exports read where ingest wrote
        await asyncio.to_thread(media.thumbs.trim)  # a --thumb-cache smaller than what the disk holds
        # While running, what abandoned work left in ROOT/cache goes after a few minutes.
        self.janitor = CacheJanitor(media.exports_dir, media.thumbs.root, lambda: media.active)
        self.janitor.start()
        self._start_detection(local)
        await self._start_notify()
        if self.replica_location is not None:
            await self._start_replica(self.replica_location)
        self.port = await self.server.start(host, port)
        log.info("store serving on port %d, root %s, index %s, segments in %s", self.port, self.root,
                 describe(self.index_url, self.root), self.segments.description)

    async def _start_notify(self) -> None:
        """Event changes, alert rules, the outbox, webhooks and MQTT (store/notify), before the server serves."""
        from store.notify.service import NotifyService

        assert self.server is not None and self.index is not None
        conn = self.index.conn
        self.notify = NotifyService(self.root, conn, lambda camera: load_settings(conn, camera), self.notify_options)
        await self.notify.start()
        self.notify.attach(self.server, self.detection)
        self.server.notify = self.notify  # /health notify, sht_notify_* in /metrics

    async def _start_replica(self, location: S3Location) -> None:
        """The off-site copy: reads the index and the segments, reaches the replica in the background."""
        from store.replica.task import ReplicaTask

        assert self.server is not None
        self.replica = ReplicaTask(self.root, location, self.segments, index=self.index_url,
                                   options=self.replica_options, lease=self.lease)
        await self.replica.start()
        self.server.replica = self.replica  # /health replica, sht_replica_* in /metrics
        log.info("copying segments and events to %s", location.describe())

    async def _signing_keys(self) -> SigningKeys:
        """Alone on SQLite: ROOT/keys/ files. Sharing a PostgreSQL index: the index's key and revocations, which
        every store of it reads (store/admin/index_keys.py), so a token made for the cluster works on each."""
        assert self.index is not None
        key_file = Path(self.security.key_file) if self.security.key_file else None
        if self.index.dialect != "postgresql":
            if key_file is not None:
                raise KeyFileError("--key-file is for stores sharing a PostgreSQL index (--index postgresql://...); "
                                   f"a store on SQLite keeps its key in {self.root / 'keys'}")
            # A root back on SQLite after a time on an index: `sht token --root` is right for it again.
            (self.root / "keys" / IN_INDEX_MARK).unlink(missing_ok=True)
            return KeyStore(self.root)
        keys = IndexKeys(self.index.conn, describe(self.index_url, self.root))
        await keys.load(self.root, key_file)  # KeyFileError: the file missing, unreadable, or not the cluster's
        keys.start()  # revocations made anywhere are read every REVOKED_POLL_S
        self.index_keys = keys
        return keys

    def _start_detection(self, local: object) -> None:
        """Detection wired to ingest, the relay, the index and the control links (nothing with --detect off)."""
        assert self.server is not None and self.index is not None
        options, server = self.detect_options, self.server
        self.detection = DetectionService(
            self.index.conn, server.relay, lambda camera: load_settings(self.index.conn, camera),  # type: ignore[union-attr]
            local,  # type: ignore[arg-type]
            options, substream=lambda camera: server.locate(camera).substream, zones=self._label_zones,
            on_label=lambda event_id, camera, start_us, label: server.event_labelled(camera, start_us, label),
            root=self.root, segments=self.segments)  # events analysed from their recording: read where ingest wrote
        self.detection.observe = lambda camera, device, s: server.metrics.detect_seconds.labels(camera,
                                                                                                  device).observe(s)
        if options.mode == "off":
            return
        self.detection.remote = server.detect_workers
        self.detection.start(server.fleet.cameras_here)  # not those of nodes linked to another store of the index
        server.ingest.on_event = self.detection.event_changed
        server.detection = self.detection

    def _label_zones(self, camera: str) -> ZoneCheck:
        """The camera's zones that require labels, from its node's latest health."""
        assert self.server is not None
        fleet = self.server.fleet
        node = fleet.node_of(camera)
        health = fleet.nodes[node].health if node is not None and node in fleet.nodes else None
        return LabelZones.from_health(health.cameras.get(camera) if health is not None else None).allows

    async def stop(self) -> None:
        if self.detection is not None:
            await self.detection.close()
        if self.janitor is not None:
            await self.janitor.stop()
        if self.server is not None:
            await self.server.close()
        if self.notify is not None:  # after the server: no more changes come; before the index: it reads rows
            await self.notify.stop()
        if self.retention is not None:
            await self.retention.stop()
        if self.coverage is not None:
            await self.coverage.stop()
        if self.replica is not None:
            await self.replica.stop()
        if self.index_keys is not None:
            await self.index_keys.stop()
        if self.lease is not None:
            await self.lease.stop()
        if self.index is not None:
            await self.index.close()
        await self.segments.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


async def run_store(root: Path, host: str, port: int, policy: RetentionPolicy | None = None,
                    security: SecurityOptions | None = None, node_ca: str | None = None,
                    media: MediaLimits | None = None, detect: DetectOptions | None = None,
                    segments: SegmentStore | None = None, index: str | None = None,
                    replica: S3Location | None = None, notify: NotifyOptions | None = None) -> None:
    store = Store(root, policy, security, node_ca, media, detect, segments, index, replica, notify=notify)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await store.start(host, port)
    await stop.wait()
    await store.stop()
