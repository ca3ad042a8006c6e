"""Wires a node together: cameras, recorders, uploader, server; starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from node.control import ControlLink
from node.master import CameraMaster
from node.recorder import Recorder
from node.server import NodeServer
from node.spool import Spool, SpooledSegment
from node.uploader import Uploader
from shared.config import NodeConfig
from shared.health import ProcessMonitor
from shared.protocol.control import Hello, SettingsPush

log = logging.getLogger(__name__)
SHUTDOWN_UPLOAD_S = 15.0


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.master = CameraMaster(config.cameras)
        self.spool = Spool(config.spool_path)
        self.uploader = Uploader(config.store_url, self.spool, config.id, config.spool_limit_bytes)
        self.recorders: list[Recorder] = []
        self.server = NodeServer(self.master, self.health)
        self.monitor = ProcessMonitor()
        self.port: int | None = None
        self._tasks: list[asyncio.Task] = []
        self.control = (ControlLink(config.store_url, self._hello, self.health, self._apply_settings)
                        if config.store_url else None)

    def _hello(self) -> Hello:
        return Hello(self.config.id, self.port or 0, tuple(self.master.cameras))

    def _apply_settings(self, push: SettingsPush) -> None:
        camera = self.master.cameras.get(push.camera)
        if camera is None:
            log.warning("store sent settings for %s, which is not on this node", push.camera)
            return
        if camera.settings != push.settings:
            log.info("camera %s settings now %s", push.camera, push.settings)
        camera.settings = dict(push.settings)

    async def _spooled(self, item: SpooledSegment) -> None:
        await self.uploader.add_and_enforce(item)

    async def _lost(self, camera: str, start_us: int, end_us: int, frames: int, why: str) -> None:
        await self.uploader.report_loss(camera, start_us, end_us, frames, why)

    async def start(self) -> None:
        backlog = await asyncio.to_thread(self.spool.scan)
        if backlog:
            log.info("spool holds %d segments from an earlier run; uploading them first", len(backlog))
        for item in backlog:
            self.uploader.add(item)
        self._tasks.append(asyncio.create_task(self.uploader.run(), name="uploader"))
        for camera in self.master.cameras.values():
            recorder = Recorder(self.config.id, camera, self.config.segment_seconds,
                                self.spool, self._spooled, self._lost)
            self.recorders.append(recorder)
        self.master.start()  # after the recorders subscribed: they see the very first keyframe
        self._recording = [asyncio.create_task(r.run(), name=f"recorder-{r.camera.id}")
                           for r in self.recorders]
        self.port = await self.server.start(self.config.host, self.config.port)
        if self.control is not None:
            self._tasks.append(asyncio.create_task(self.control.run(), name="control"))
        log.info("node %s serving on port %d with cameras %s", self.config.id, self.port,
                 ", ".join(self.master.cameras))

    async def stop(self) -> None:
        """Clean stop: finish the segment in progress, spool it, try to upload what is left."""
        await self.master.stop()
        await asyncio.gather(*self._recording)
        if self.config.store_url:
            done = await self.uploader.drain(SHUTDOWN_UPLOAD_S)
            if not done:
                log.warning("stopping with %d segments still in the spool; they upload on the "
                            "next start", len(self.uploader.pending))
        await self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def health(self) -> dict:
        return {
            "node": self.config.id,
            "uptime_s": round(time.monotonic() - self.started, 1),
            **self.monitor.reading(),
            "cameras": {
                r.camera.id: {**r.camera.health(), "recording": r.health()} for r in self.recorders
            },
            "spool": self.uploader.backlog(),  # in memory: /health never walks the disk
            "store": {
                "url": self.config.store_url,
                "link": self.uploader.link,
                "last_error": self.uploader.last_error,
                "uploaded": self.uploader.uploaded,
                "refused": self.uploader.rejected,
                "control": self.control.state if self.control else "not configured",
            },
        }


async def run_node(config: NodeConfig) -> None:
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    await stop.wait()
    log.info("node %s stopping: finishing segments in progress", config.id)
    await node.stop()
