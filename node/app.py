"""Wires a node together: cameras, recorders, uploader, server; starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field, replace

from node.capture.master import CameraMaster
from node.motion.config import DetectorConfig
from node.motion.worker import MotionWorker
from node.recording.modes import RecordingModes
from node.recording.recorder import Recorder
from node.recording.spool import Spool
from node.serve.metrics import NodeMetrics
from node.serve.server import NodeServer
from node.settings import SettingsApplier
from node.store_link.control import ControlLink
from node.store_link.keyring import StoreKeyring
from node.store_link.uploader import Uploader
from shared.config import CameraConfig, NodeConfig
from shared.health import ProcessMonitor
from shared.protocol.control import Hello
from shared.protocol.health import NodeHealth, StoreLinkHealth
from shared.security import SecurityOptions, bearer, client_ssl
from shared.soc import SocMonitor
from shared.store_list import StoreRotation, is_tls

log = logging.getLogger(__name__)
SHUTDOWN_UPLOAD_S = 15.0


def motion_config(camera: CameraConfig, index: int) -> DetectorConfig | None:
    """The camera's detector settings (defaults if it says nothing), or None if it turns detection off."""
    if camera.motion is False:
        return None
    return DetectorConfig.from_json(camera.motion or {}, "node config", f"cameras[{index}].motion")


@dataclass(frozen=True)
class NodeSecurity:
    listen: SecurityOptions = field(default_factory=SecurityOptions)  # auth, TLS and allowlists of this node
    token: str | None = None  # a ``node`` token for the store (``--token``/``SHT_TOKEN``)
    store_key: str | None = None  # the store's public key file; else fetched from the store
    ca: str | None = None  # CA file to verify a wss:// store with


class Node:
    def __init__(self, config: NodeConfig, security: NodeSecurity | None = None) -> None:
        self.config = config
        self.security = security = security or NodeSecurity()
        stores = config.stores
        # One rotation for the upload and control links: both follow the store that answers (docs/cluster.md).
        self.rotation = StoreRotation(stores) if stores else None
        client_ssl_context = client_ssl("wss://", security.ca) if any(map(is_tls, stores)) else None
        self.started = time.monotonic()
        self.master = CameraMaster(config.cameras)
        self.spool = Spool(config.spool_path)
        self.uploader = Uploader(config.store_url, self.spool, config.id, config.spool_limit_bytes,
                                 headers=bearer(security.token), ssl_context=client_ssl_context,
                                 rotation=self.rotation)
        self.recorders: list[Recorder] = []
        self.keyring = (StoreKeyring(config.store_url, security.store_key, config.spool_path / "store-key.pub",
                                     client_ssl_context) if security.listen.auth else None)
        self.server = NodeServer(self.master, self.health, security.listen.access(None),
                                 self.keyring, security.listen.server_ssl())
        self.server.metrics = NodeMetrics(self).registry  # GET /metrics
        self.monitor = ProcessMonitor()
        self.soc = SocMonitor()  # vcgencmd / thermal zones / NVML, cached: never raises
        self.port: int | None = None
        self._tasks: list[asyncio.Task] = []
        self.recording = RecordingModes(self.master.cameras, self.spool, self.uploader, camera_clocks={
            camera.id: camera.timebase.now_us for camera in self.master.cameras.values()})
        self.settings = SettingsApplier(self.master.cameras, self.recording)
        self.control = (ControlLink(config.store_url, self._hello, self.health, self.settings.apply,
                                    self._revoked, headers=bearer(security.token), ssl_context=client_ssl_context,
                                    on_event_label=lambda m: self.recording.event_label(m.camera, m.start_us,
                                                                                         m.label),
                                    rotation=self.rotation)
                        if config.store_url else None)
        # objects mode waits for labels only while the store can hear of events and answer: the control link up
        # and the upload link not failing (idle counts as up: it connects with the event); else as motion mode
        self.recording.store_reachable = lambda: (self.control is not None and self.control.state == "connected"
                                                  and self.uploader.last_error is None)
        self.motion_configs = {c.id: motion_config(c, i) for i, c in enumerate(config.cameras)}
        self._stall_reports: set[asyncio.Task] = set()
        for camera in self.master.cameras.values():
            camera.on_stall = self._camera_stalled

    def _camera_stalled(self, camera: str, start_us: int, end_us: int | None, why: str) -> None:
        """A camera stopped delivering frames, or started again: a camera-stalled event for the store."""
        task = asyncio.get_running_loop().create_task(self.uploader.report_stall(camera, start_us, end_us, why))
        self._stall_reports.add(task)
        task.add_done_callback(self._stall_reports.discard)

    def _hello(self) -> Hello:
        return Hello(self.config.id, self.port or 0, tuple(self.master.cameras),
                     tls=self.security.listen.tls_cert is not None)

    def _revoked(self, token_ids: tuple[str, ...]) -> None:
        if self.keyring is not None:
            self.keyring.remember_revoked(frozenset(token_ids))
            self.server.close_revoked(self.keyring.revoked)

    async def start(self) -> None:
        if self.keyring is not None and not await asyncio.to_thread(self.keyring.load_local):
            self._tasks.append(asyncio.create_task(self.keyring.fetch_until_found(), name="store-key"))
        backlog = await asyncio.to_thread(self.spool.scan)
        if backlog:
            log.info("spool holds %d segments from an earlier run; uploading them first", len(backlog))
        for item in backlog:
            self.uploader.add(item)
        self._tasks.append(asyncio.create_task(self.uploader.run(), name="uploader"))
        loop = asyncio.get_running_loop()
        for camera in self.master.cameras.values():
            detection = self.motion_configs[camera.id]
            if detection is not None:
                cfg = camera.config
                camera.motion = MotionWorker(camera.id, self.config.id, detection, cfg.width, cfg.height, cfg.fps,
                                             loop, self.recording.motion_started,
                                             self.recording.motion_finished_soon)
        for camera in self.master.cameras.values():
            recorder = Recorder(self.config.id, camera, self.config.segment_seconds,
                                self.spool, self.recording.segment_spooled,
                                self.uploader.report_loss)
            self.recorders.append(recorder)
        self.master.start()  # after the recorders subscribed: they see the very first keyframe
        self._recorder_tasks = [asyncio.create_task(r.run(), name=f"recorder-{r.camera.id}")
                           for r in self.recorders]
        self.port = await self.server.start(self.config.host, self.config.port)
        self._tasks.append(asyncio.create_task(self.recording.run(), name="recording-modes"))
        if self.control is not None:
            self._tasks.append(asyncio.create_task(self.control.run(), name="control"))
        log.info("node %s serving on port %d with cameras %s", self.config.id, self.port,
                 ", ".join(self.master.cameras))

    async def stop(self) -> None:
        """Clean stop: finish the segment in progress, spool it, try to upload what is left."""
        await self.master.stop()
        await asyncio.gather(*self._stall_reports)  # a stall still going on was closed by the stop
        await asyncio.gather(*self._recorder_tasks)
        await self.recording.finish()  # detection has closed its last event by now
        if self.config.store_url:
            done = await self.uploader.drain(SHUTDOWN_UPLOAD_S)
            if not done:
                log.warning("stopping with %d segments still in the spool; they upload on the "
                            "next start", len(self.uploader.pending))
        await self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def health(self) -> NodeHealth:
        """/health and the heartbeat, built from each part's typed health; ``to_json`` happens only where
        it leaves the node (the /health route, the heartbeat)."""
        return NodeHealth(
            node=self.config.id,
            uptime_s=round(time.monotonic() - self.started, 1),
            process=self.monitor.reading(),
            soc=self.soc.reading(),
            cameras={
                r.camera.id: replace(r.camera.health(), recording=self.recording.health(r.camera.id, r.health()))
                for r in self.recorders
            },
            spool=self.uploader.backlog(),  # in memory: /health never walks the disk
            store=StoreLinkHealth(
                url=self.uploader.store,
                link=self.uploader.link,
                last_error=self.uploader.last_error,
                uploaded=self.uploader.uploaded,
                refused=self.uploader.rejected,
                control=self.control.state if self.control else "not configured",
                stores=self.config.store_url,
                control_url=self.control.store if self.control else None,
                failovers=self.rotation.switches if self.rotation else None,
                resent=self.uploader.resent,
            ),
        )


async def run_node(config: NodeConfig, security: NodeSecurity | None = None) -> None:
    node = Node(config, security)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    await stop.wait()
    log.info("node %s stopping: finishing segments in progress", config.id)
    await node.stop()
