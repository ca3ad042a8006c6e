"""Wires a node together: cameras, recorders, uploader, server; starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import av

from node.capture.master import CameraMaster
from node.motion.config import DetectorConfig
from node.motion.worker import MotionWorker
from node.recording.recorder import Recorder
from node.recording.roll import RecordingGate
from node.recording.spool import Spool, SpooledSegment
from node.recording.trim import trim_segment
from node.serve.metrics import NodeMetrics
from node.serve.server import NodeServer
from node.store_link.control import ControlLink
from node.store_link.keyring import StoreKeyring
from node.store_link.uploader import Uploader
from shared.clock import now_us
from shared.config import CameraConfig, NodeConfig
from shared.health import ProcessMonitor
from shared.protocol.control import Hello, SettingsPush
from shared.protocol.ingest import EventRecord
from shared.security import SecurityOptions, bearer, client_ssl
from shared.soc import SocMonitor

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
        client_ssl_context = client_ssl(config.store_url or "", security.ca)
        self.started = time.monotonic()
        self.master = CameraMaster(config.cameras)
        self.spool = Spool(config.spool_path)
        self.uploader = Uploader(config.store_url, self.spool, config.id, config.spool_limit_bytes,
                                 headers=bearer(security.token), ssl_context=client_ssl_context)
        self.recorders: list[Recorder] = []
        self.keyring = (StoreKeyring(config.store_url, security.store_key, config.spool_path / "store-key.pub",
                                     client_ssl_context) if security.listen.auth else None)
        self.server = NodeServer(self.master, self.health, security.listen.access(None), self.keyring,
                                 security.listen.server_ssl())
        self.server.metrics = NodeMetrics(self).registry  # GET /metrics
        self.monitor = ProcessMonitor()
        self.soc = SocMonitor()  # vcgencmd / thermal zones / NVML, cached: never raises
        self.port: int | None = None
        self._tasks: list[asyncio.Task] = []
        self.control = (ControlLink(config.store_url, self._hello, self.health, self._apply_settings,
                                    self._revoked, headers=bearer(security.token), ssl_context=client_ssl_context)
                        if config.store_url else None)
        # ``motion`` recording mode: finished segments wait here until an event wants them or cannot.
        self.gates: dict[str, RecordingGate[SpooledSegment]] = {c.id: RecordingGate() for c in config.cameras}
        self.discarded_quiet: dict[str, int] = {c.id: 0 for c in config.cameras}
        self.trimmed_bytes: dict[str, int] = {c.id: 0 for c in config.cameras}
        self._motion_tasks: set[asyncio.Task] = set()
        self.motion_configs = {c.id: motion_config(c, i) for i, c in enumerate(config.cameras)}

    def _hello(self) -> Hello:
        return Hello(self.config.id, self.port or 0, tuple(self.master.cameras),
                     tls=self.security.listen.tls_cert is not None)

    def _apply_settings(self, push: SettingsPush) -> None:
        camera = self.master.cameras.get(push.camera)
        if camera is None:
            log.warning("store sent settings for %s, which is not on this node", push.camera)
            return
        if camera.settings != push.settings:
            log.info("camera %s settings now %s", push.camera, push.settings)
        camera.settings = dict(push.settings)
        sensitivity = push.settings.get("motion_sensitivity")
        if camera.motion is not None and isinstance(sensitivity, (int, float)):
            camera.motion.set_sensitivity(float(sensitivity))

    def _motion_mode(self, camera: str) -> bool:
        return self.master.cameras[camera].settings.get("recording_mode") == "motion"

    def _revoked(self, token_ids: tuple[str, ...]) -> None:
        if self.keyring is not None:
            self.keyring.remember_revoked(frozenset(token_ids))
            self.server.close_revoked(self.keyring.revoked)

    async def _spooled(self, item: SpooledSegment) -> None:
        h = item.header
        if self._motion_mode(h.camera):
            self.gates[h.camera].hold(h.start_us, h.end_us, item)
            await self._decide(h.camera)
        else:
            await self.uploader.add_and_enforce(item)

    async def _decide(self, camera: str) -> None:
        """Upload the held segments an event wants; drop those none can want (not a loss: the mode)."""
        gate = self.gates[camera]
        if self._motion_mode(camera):
            await self._settle(camera, *gate.decide_spans(now_us()))
        else:
            await self._settle(camera, [(item, None) for item in gate.release_all()], [])

    async def _settle(self, camera: str, keep: Sequence[tuple[SpooledSegment, tuple[int, int] | None]],
                      discard: Sequence[SpooledSegment]) -> None:
        for item, span in keep:
            if span is not None:
                item = await asyncio.to_thread(self._trim, item, span)
            await self.uploader.add_and_enforce(item)
        for item in discard:
            await asyncio.to_thread(self.spool.remove, item)
            self.discarded_quiet[camera] += 1

    def _trim(self, item: SpooledSegment, span: tuple[int, int]) -> SpooledSegment:
        """Keep only the keyframe intervals the events want (blocking: a worker thread)."""
        h = item.header
        if span[0] <= h.start_us and span[1] >= h.end_us:
            return item
        try:
            cut = trim_segment(item.media_path, h, *span)
        except (OSError, ValueError, av.FFmpegError) as exc:  # keep it whole rather than lose any of it
            log.warning("could not trim %s (%s); keeping all of it", h.segment_id, exc)
            return item
        if cut is None:
            return item
        header, data = cut
        try:
            # Under its own name, durable before the whole one goes: a crash in between leaves both,
            # and the store keeps whichever arrives first (the other is refused as a conflict).
            trimmed = self.spool.put(header, data, tag=".trim")
            self.spool.remove(item)
        except OSError as exc:
            log.warning("could not spool the trimmed %s (%s); keeping all of it", h.segment_id, exc)
            return item
        self.trimmed_bytes[h.camera] += h.bytes - header.bytes
        return trimmed

    async def _gatekeeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for camera in self.gates:
                try:
                    await self._decide(camera)
                except Exception:  # held segments stay held (and durable); try again next second
                    log.exception("camera %s: motion-mode decision failed", camera)

    def _motion_finished_soon(self, record: EventRecord) -> None:
        # The gate hears of the end now, in order with the next start (the task only spools and uploads).
        self.gates[record.camera].event_finished(record.start_us, record.end_us)
        task = asyncio.create_task(self.motion_finished(record))
        self._motion_tasks.add(task)
        task.add_done_callback(self._motion_tasks.discard)

    def motion_started(self, camera: str, start_us: int) -> None:
        self.gates[camera].event_started(start_us)

    async def motion_finished(self, record: EventRecord) -> None:
        try:
            self.uploader.add(await asyncio.to_thread(self.spool.put_event, record))
        except OSError as exc:
            log.error("could not spool motion event %s: %s", record.record_id, exc)
        await self._decide(record.camera)

    async def _lost(self, camera: str, start_us: int, end_us: int, frames: int, why: str) -> None:
        await self.uploader.report_loss(camera, start_us, end_us, frames, why)

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
                                             loop, self.motion_started, self._motion_finished_soon)
        for camera in self.master.cameras.values():
            recorder = Recorder(self.config.id, camera, self.config.segment_seconds,
                                self.spool, self._spooled, self._lost)
            self.recorders.append(recorder)
        self.master.start()  # after the recorders subscribed: they see the very first keyframe
        self._recording = [asyncio.create_task(r.run(), name=f"recorder-{r.camera.id}")
                           for r in self.recorders]
        self.port = await self.server.start(self.config.host, self.config.port)
        self._tasks.append(asyncio.create_task(self._gatekeeper(), name="gatekeeper"))
        if self.control is not None:
            self._tasks.append(asyncio.create_task(self.control.run(), name="control"))
        log.info("node %s serving on port %d with cameras %s", self.config.id, self.port,
                 ", ".join(self.master.cameras))

    async def stop(self) -> None:
        """Clean stop: finish the segment in progress, spool it, try to upload what is left."""
        await self.master.stop()
        await asyncio.gather(*self._recording)
        await asyncio.gather(*self._motion_tasks)  # events closed by the stop are spooled too
        for camera, gate in self.gates.items():
            # Detection has closed its last event by now, so every held segment's fate is known.
            if self._motion_mode(camera):
                await self._settle(camera, *gate.finish_spans())
            else:
                await self._settle(camera, [(item, None) for item in gate.release_all()], [])
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
            "soc": self.soc.reading(),
            "cameras": {
                r.camera.id: {**r.camera.health(),
                              "recording": {**r.health(), "held": len(self.gates[r.camera.id].held),
                                            "discarded_quiet": self.discarded_quiet[r.camera.id],
                                            "trimmed_bytes": self.trimmed_bytes[r.camera.id]}}
                for r in self.recorders
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
