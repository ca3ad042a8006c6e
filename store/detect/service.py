"""Object detection in the store: which frames are analysed, by whom, and what the events learn.

While a motion event of a camera is open (the node tells the store when it
opens: docs/protocol.md), the camera's feed (store/detect/frames.py) decodes
its live stream from the last keyframe on and hands over one picture every
1/``fps`` seconds of capture time from the event's start. Pictures wait in a
small queue per camera (oldest dropped and counted when it is full; the
detector never makes the stream wait), are analysed one at a time by the
backend (a detector process of the store's own, or ``sht detect`` workers
while any is connected), and the detections go to the event's analysis
(store/detect/labelling.py). A new or better label is written to the index at
once; the snapshot follows (at most every ``SNAPSHOT_EVERY_S``, and at the end).

A detector that fails on a frame, crashes or hangs costs that frame (counted,
shown in /health); recording, live video and the event's motion meaning are
never touched by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import numpy as np

from shared.detect.result import Detection
from shared.metrics import Family, counter, gauge
from shared.protocol.detector_health import CameraDetection, DetectorHealth
from shared.protocol.ingest import EventRecord
from shared.settings import CameraSettings
from store.detect.frames import CameraFeed, Picture, to_rgb
from store.detect.labelling import EventAnalysis, ZoneCheck
from store.detect.remote import RemoteDetectors
from store.detect.runner import DetectFailed
from store.detect.snapshot import snapshot_jpeg
from store.detect.tracker import StationaryMemory
from store.index.event_labels import set_event_labelling, set_event_snapshot
from store.index.query import segment_near
from store.ingest.events import EventNotice
from store.live.relay import Relay
from store.media.segment_file import SegmentFileError
from store.media.thumbs import decode_frame_near

log = logging.getLogger(__name__)

DETECT_FPS = 5.0
QUEUE_PER_CAMERA = 10  # pictures waiting per camera (2 s at 5 fps): the replay of an event's first GOP fits
SNAPSHOT_EVERY_S = 2.0
MAX_ANALYSIS_S = 600.0  # an event left open longer (a node that died mid-event) is finished here
CLOSE_GRACE_S = 1.0  # after an event closes, this long for its last frames to be analysed
BEST_FRAME_WAIT_S = 60.0  # for the segment that holds an event's best frame to arrive
FINISHED_REMEMBERED = 10_000


class Backend(Protocol):
    """What analyses a picture: store/detect/runner.py LocalDetector, store/detect/remote.py RemoteDetectors."""

    busy: bool  # no room for another frame now
    info: dict[str, Any]  # device, provider, model: for health

    async def detect(self, frame: np.ndarray, min_score: float | None = None, *, camera: str = "unknown",
                     capture_us: int = 0) -> list[Detection]: ...


DETECT_MODES = ("off", "local")
WATCH_EVERY_S = 1.0  # how often the cameras the store knows are looked at for feeds to open (cheap)


@dataclass(frozen=True)
class DetectOptions:
    """``sht store --detect ...``: where detection runs and with which model."""

    mode: str = "local"  # off: no detection; local: the store's own detector process (workers take over)
    fps: float = DETECT_FPS
    model: str | None = None  # None: the built-in person model
    labels: str | None = None
    device: str = "cpu"
    threads: int = 1


@dataclass
class CameraState:
    feed: CameraFeed | None = None
    queue: deque[Picture] = field(default_factory=lambda: deque(maxlen=QUEUE_PER_CAMERA))
    analyses: list[EventAnalysis] = field(default_factory=list)
    next_us: int = 0  # capture time of the next picture wanted
    min_score: float = 0.5  # of its latest event's settings: the detector leaves out what scores less
    in_flight: bool = False  # one of its pictures is with the backend
    frames: int = 0
    dropped: int = 0
    labelled: int = 0
    stream: str | None = None


class DetectionService:
    def __init__(self, conn: aiosqlite.Connection, relay: Relay, settings: Callable[[str], object],
                 local: Backend | None, options: DetectOptions | None = None,
                 substream: Callable[[str], bool | None] = lambda camera: None,
                 zones: Callable[[str], ZoneCheck] = lambda camera: (lambda label, box: True),
                 on_label: Callable[[int, str, int, str | None], None] | None = None,
                 root: Path | None = None) -> None:
        """``settings(camera)``: an awaitable of the camera's CameraSettings. ``local``: the store's own detector,
        started (None with ``--detect off``). ``on_label(event_id, camera, start_us, label)``: the first label
        of an event, or None once an analysed event ended with none (``objects``-mode nodes decide by it)."""
        self.conn, self.relay = conn, relay
        self.settings = settings
        self.options = options or DetectOptions()
        self.substream, self.zones, self.on_label = substream, zones, on_label
        self.root = root  # the store's root: segments hold the best frames of events seen only once ended
        self.cameras: dict[str, CameraState] = {}
        self.analyses: dict[int, EventAnalysis] = {}
        self.memory: dict[str, StationaryMemory] = {}
        self.local = local  # the store's own detector, started (None with --detect off)
        self.remote: RemoteDetectors | None = None  # ``sht detect`` workers: they take the work while connected
        self.state = "off" if local is None else "starting"
        self.last_error: str | None = None
        self.frames = self.dropped = self.errors = self.labelled = 0
        self.inference_ms: deque[float] = deque(maxlen=200)
        self.observe: Callable[[str, str, float], None] | None = None  # (camera, device, seconds): /metrics
        self._ready = asyncio.Event()  # a picture is queued
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._known: Callable[[], list[str]] = list  # the cameras the store knows (set by ``start``)
        self._in_flight = 0  # pictures with the backend now
        self._opening: dict[int, EventRecord | None] = {}  # event id -> its close, if it came while opening
        self._finished: OrderedDict[int, None] = OrderedDict()  # events analysed lately: a late close is not news

    @property
    def enabled(self) -> bool:
        return self.local is not None or self.remote is not None

    def start(self, cameras: Callable[[], list[str]] | None = None) -> None:
        """Start handing out frames and, with ``cameras``, keep a feed open for every known camera that looks for
        objects. The store's own detector comes started (``local``): a model that does not load stops the store
        before anything else is opened."""
        if cameras is not None:
            self._known = cameras
            self._spawn(self._watch_cameras())
        if self.local is not None:
            self.state = "running"
        self._runner = asyncio.create_task(self._run(), name="detect-runner")

    async def close(self) -> None:
        for task in [self._runner, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._runner, *self._tasks] if t is not None), return_exceptions=True)
        for cam in self.cameras.values():
            if cam.feed is not None:
                await cam.feed.stop()
        closer = getattr(self.local, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result

    # ---- events, from ingest (synchronous: the work goes to tasks) ----

    def event_changed(self, notice: EventNotice) -> None:
        record = notice.record
        if record.kind != "motion" or not self.enabled:
            return
        analysis = self.analyses.get(notice.event_id)
        if notice.event_id in self._opening:  # its analysis is being set up (reading the camera's settings)
            if not record.open:
                self._opening[notice.event_id] = record
        elif analysis is None and record.open:
            self._opening[notice.event_id] = None
            self._spawn(self._open(notice.event_id, record.camera, record.start_us))
        elif analysis is not None and not record.open:
            analysis.end_us = record.end_us
            analysis.best_frame_us = record.thumb_us
            self._spawn(self._close_later(analysis))
        elif (analysis is None and not record.open and record.thumb_us is not None and self.root is not None
              and notice.event_id not in self._finished):
            # Heard of only once it had ended (a node older than open events, or the store was away when it
            # opened): its best frame from the recording is all there is to look at.
            self._spawn(self._best_frame(notice.event_id, record.camera, record.start_us, record.end_us,
                                         record.thumb_us))

    def _spawn(self, work: object) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.last_error = f"{type(task.exception()).__name__}: {task.exception()}"
            log.error("object detection: %s failed", task.get_name(), exc_info=task.exception())

    async def _open(self, event_id: int, camera: str, start_us: int) -> None:
        try:
            settings = await self.settings(camera)  # type: ignore[misc]
        finally:
            closed = self._opening.pop(event_id, None)  # its close, if it came meanwhile
        assert isinstance(settings, CameraSettings)
        objects = settings.objects
        if not objects or event_id in self.analyses:
            return
        analysis = EventAnalysis(event_id, camera, start_us, objects=objects, min_score=settings.min_score,
                                 threshold=settings.threshold, stationary=self.memory.setdefault(camera,
                                                                                                StationaryMemory()),
                                 allows=self.zones(camera))
        self.analyses[event_id] = analysis
        cam = self._camera(camera)
        cam.min_score = settings.min_score
        cam.analyses.append(analysis)
        cam.next_us = min(cam.next_us, start_us) if cam.analyses[:-1] else start_us
        assert cam.feed is not None
        cam.feed.set_decoding(True)
        self._spawn(self._expire(analysis))
        if closed is not None:
            analysis.end_us, analysis.best_frame_us = closed.end_us, closed.thumb_us
            self._spawn(self._close_later(analysis))

    async def _close_later(self, analysis: EventAnalysis) -> None:
        await asyncio.sleep(CLOSE_GRACE_S)  # frames up to its end are decoded and queued by now, or never come
        await self._drain(analysis.camera)
        await self._finish(analysis)

    async def _expire(self, analysis: EventAnalysis) -> None:
        await asyncio.sleep(MAX_ANALYSIS_S)
        if analysis.event_id in self.analyses:
            log.warning("event %d on %s still open after %.0f s: detection stops for it", analysis.event_id,
                        analysis.camera, MAX_ANALYSIS_S)
            await self._finish(analysis, expired=True)

    async def _drain(self, camera: str, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the camera's queued pictures are analysed."""
        cam = self.cameras.get(camera)
        deadline = time.monotonic() + timeout_s
        # Polls a queue, the frame in flight and a deadline: one Event would not say all three.
        while cam is not None and (cam.queue or cam.in_flight) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _finish(self, analysis: EventAnalysis, expired: bool = False) -> None:
        """``expired``: the event is still open on its node; its label may come, but no verdict of "none" does."""
        if self.analyses.pop(analysis.event_id, None) is None:
            return
        self._finished[analysis.event_id] = None
        while len(self._finished) > FINISHED_REMEMBERED:
            self._finished.popitem(last=False)
        cam = self.cameras[analysis.camera]
        cam.analyses.remove(analysis)
        if not cam.analyses and cam.feed is not None:
            cam.feed.set_decoding(False)
        analysis.finish()
        if analysis.frames:
            await self._write(analysis, final=True)
            if analysis.label is None and not expired and self.on_label is not None:
                # The verdict "analysed, none of the camera's objects": an objects-mode node lets the footage go
                # only on this, never on silence (docs/objects.md).
                self.on_label(analysis.event_id, analysis.camera, analysis.start_us, None)
        elif analysis.best_frame_us is not None and not analysis.single_frame and self.root is not None:
            # No live frame was analysed (no stream, the detector down): the recording's best frame then.
            await self._best_frame(analysis.event_id, analysis.camera, analysis.start_us, analysis.end_us or
                                   analysis.start_us, analysis.best_frame_us)

    async def _best_frame(self, event_id: int, camera: str, start_us: int, end_us: int, at_us: int) -> None:
        """Analyse the frame nearest ``at_us`` from the stored segment holding it (waiting for that segment up
        to ``BEST_FRAME_WAIT_S``: segments arrive after their events)."""
        assert self.root is not None
        settings = await self.settings(camera)  # type: ignore[misc]
        if not settings.objects:
            return
        deadline = time.monotonic() + BEST_FRAME_WAIT_S
        while (found := await segment_near(self.conn, camera, at_us)) is None or not found[1] <= at_us < found[2]:
            if time.monotonic() > deadline:
                log.info("event %d on %s: no segment holds its best frame; left unanalysed", event_id, camera)
                return
            await asyncio.sleep(2.0)
        try:
            frame, frame_us = await asyncio.to_thread(decode_frame_near, self.root / found[0], found[1], at_us)
            rgb = await asyncio.to_thread(to_rgb, frame)
        except SegmentFileError as exc:
            log.warning("event %d on %s: cannot read its best frame: %s", event_id, camera, exc)
            return
        analysis = EventAnalysis(event_id, camera, frame_us, objects=settings.objects,
                                 min_score=settings.min_score, threshold=settings.threshold,
                                 stationary=self.memory.setdefault(camera, StationaryMemory()),
                                 allows=self.zones(camera), single_frame=True)
        analysis.end_us = frame_us + 1
        self.analyses[event_id] = analysis
        cam = self._camera(camera)
        cam.analyses.append(analysis)
        self._deliver(Picture(camera, frame_us, rgb))
        await self._close_later(analysis)

    # ---- feeds ----

    def _camera(self, camera: str) -> CameraState:
        cam = self.cameras.get(camera)
        if cam is None:
            cam = self.cameras[camera] = CameraState()
        if cam.feed is None:
            cam.stream = "sub" if self.substream(camera) else "main"
            cam.feed = CameraFeed(self.relay, camera, cam.stream, lambda t, c=camera: self._wanted(c, t),
                                  self._deliver)
            cam.feed.start()
        return cam

    async def _watch_cameras(self) -> None:
        while True:
            for camera in self._known():
                if camera in self.cameras and self.cameras[camera].feed is not None:
                    continue
                try:
                    settings = await self.settings(camera)  # type: ignore[misc]
                except Exception:
                    log.exception("camera %s: cannot read its settings", camera)
                    continue
                if settings.objects:
                    self.watch(camera)
            await asyncio.sleep(WATCH_EVERY_S)

    def watch(self, camera: str) -> None:
        """Hold the camera's stream from now on, so its next event finds it flowing (and its GOP buffered)."""
        if self.enabled:
            self._camera(camera)

    def _wanted(self, camera: str, capture_us: int) -> bool:
        """From the decode thread: is this frame one to analyse? (Sampling at ``fps`` of capture time.)"""
        cam = self.cameras[camera]
        if capture_us < cam.next_us or not any(a.wants(capture_us) for a in list(cam.analyses)):
            return False
        cam.next_us = capture_us + int(1_000_000 / self.options.fps)
        return True

    def _deliver(self, picture: Picture) -> None:
        cam = self.cameras[picture.camera]
        if len(cam.queue) == cam.queue.maxlen:
            cam.dropped += 1
            self.dropped += 1
        cam.queue.append(picture)
        self._ready.set()

    # ---- the detector loop ----

    def backend(self) -> Backend | None:
        """Connected workers take the work; the store's own detector otherwise."""
        if self.remote is not None and self.remote.connected:
            return self.remote
        return self.local

    async def _run(self) -> None:
        """Hand pictures to the backend while it has room: cameras in turn, one picture of a camera at a time (its
        tracker takes frames in order), several cameras at once where the backend can (one per worker)."""
        turn = 0
        while True:
            backend = self.backend()
            names = list(self.cameras)
            for i in range(len(names)):
                camera = names[(turn + i) % len(names)]
                cam = self.cameras[camera]
                if cam.in_flight or not cam.queue:
                    continue
                if backend is None:  # detection failed to start and no worker is connected
                    cam.dropped += len(cam.queue)
                    self.dropped += len(cam.queue)
                    cam.queue.clear()
                    continue
                if backend.busy or self._in_flight >= max(1, getattr(backend, "capacity", 1)):
                    break  # counted here too: a backend marks itself busy only once its detect() has run
                cam.in_flight = True
                self._in_flight += 1
                turn = (turn + i + 1) % len(names)
                self._spawn(self._analyse(camera, cam, cam.queue.popleft(), backend))
            self._ready.clear()
            await self._ready.wait()

    async def _analyse(self, camera: str, cam: CameraState, picture: Picture, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            detections = await backend.detect(picture.rgb, cam.min_score, camera=camera,
                                              capture_us=picture.capture_us)
        except DetectFailed as exc:
            self.errors += 1
            self.last_error = str(exc)
            return
        except Exception as exc:  # a backend bug must not end detection for good
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("detector failed on a frame of %s", camera)
            return
        finally:
            cam.in_flight = False
            self._in_flight -= 1
            self._ready.set()
        elapsed = time.perf_counter() - started
        self.inference_ms.append(elapsed * 1000)
        if self.observe is not None:
            self.observe(camera, str(backend.info.get("device") or "cpu"), elapsed)
        self.frames += 1
        cam.frames += 1
        for analysis in list(cam.analyses):
            if not analysis.wants(picture.capture_us):
                continue
            changed = analysis.add(picture.capture_us, picture.rgb, detections)
            if changed or analysis.frames == 1:  # the first frame: from now on it reads "analysed" ({} until a label)
                await self._write(analysis, final=False)
                if analysis.label is not None and not analysis.announced:
                    analysis.announced = True
                    cam.labelled += 1
                    self.labelled += 1
                    if self.on_label is not None:
                        self.on_label(analysis.event_id, camera, analysis.start_us, analysis.label)

    async def _write(self, analysis: EventAnalysis, final: bool) -> None:
        try:
            await set_event_labelling(self.conn, analysis.event_id, analysis.labelling())
        except Exception:
            log.exception("could not store the labels of event %d", analysis.event_id)
            return
        best = analysis.best
        if best is None or best.capture_us == analysis.snapshot_written_us:
            return
        due = analysis.snapshot_written_us is None or final
        if not due and time.monotonic() - analysis.snapshot_at < SNAPSHOT_EVERY_S:
            return
        analysis.snapshot_written_us, analysis.snapshot_at = best.capture_us, time.monotonic()
        try:
            jpeg, width, height = await asyncio.to_thread(snapshot_jpeg, best.rgb, best.box)
            await set_event_snapshot(self.conn, analysis.event_id, best.capture_us, width, height, jpeg)
        except Exception:
            log.exception("could not store the snapshot of event %d", analysis.event_id)

    # ---- reports ----

    def health(self) -> DetectorHealth:
        ms = sorted(self.inference_ms)
        p50 = round(ms[len(ms) // 2], 2) if ms else None
        p99 = round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2) if ms else None
        backend = self.backend()
        info = backend.info if backend is not None else {}
        state = self.state
        if backend is not None and backend is self.local and state != "failed":
            local_state = getattr(self.local, "state", "ready")
            state = "running" if local_state == "ready" else local_state
        elif backend is not None:
            state = "running"
        return DetectorHealth(
            mode="off" if not self.enabled else "workers" if backend is self.remote and backend is not None
            else "local",
            state=state, device=info.get("device"), provider=info.get("provider"),
            model=Path(str(info["model"])).name if info.get("model") else None,
            workers=self.remote.connected if self.remote is not None else 0,
            inference_ms_p50=p50, inference_ms_p99=p99,
            queue=sum(len(c.queue) for c in self.cameras.values()),
            queue_limit=QUEUE_PER_CAMERA * max(1, len(self.cameras)), frames=self.frames,
            local_frames=getattr(self.local, "frames", 0),
            worker_frames=self.remote.frames if self.remote is not None else 0, dropped=self.dropped,
            errors=self.errors, restarts=getattr(self.local, "restarts", 0), labelled=self.labelled,
            last_error=self.last_error,
            cameras={name: CameraDetection(active=bool(c.analyses), frames=c.frames, dropped=c.dropped,
                                           labelled=c.labelled, stream=c.stream)
                     for name, c in sorted(self.cameras.items())})

    def metric_families(self) -> Iterator[Family]:
        frames = counter("sht_detect_frames", "Frames analysed by the object detector", ("camera",))
        dropped = counter("sht_detect_dropped_frames", "Frames not analysed: the detector was busy", ("camera",))
        labelled = counter("sht_detect_events_labelled", "Motion events that got a label", ("camera",))
        for name, c in sorted(self.cameras.items()):
            frames.add_metric([name], c.frames)
            dropped.add_metric([name], c.dropped)
            labelled.add_metric([name], c.labelled)
        yield frames
        yield dropped
        yield labelled
        errors = counter("sht_detect_errors", "Frames the detector failed on (crash, hang or bad frame)")
        errors.add_metric([], self.errors)
        yield errors
        queue = gauge("sht_detect_queue", "Frames waiting for the detector")
        queue.add_metric([], sum(len(c.queue) for c in self.cameras.values()))
        yield queue
