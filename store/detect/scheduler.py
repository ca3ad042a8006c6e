"""Which picture goes to the detector next, and to which detector: the queues between the feeds and the backends.

Each camera has a queue of ``QUEUE_PER_CAMERA`` pictures; a live picture that
finds it full pushes the oldest out (dropped and counted: the detector never
makes the stream wait), while pictures read back from a recording wait for
room (they are not live; none is lost). Cameras take turns; one picture of a
camera is with the backend at a time (its tracker takes frames in order);
several cameras are analysed at once where the backend can (one frame per
connected worker). Connected ``sht detect`` workers take the work; the store's
own detector otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from shared.detect.result import Detection
from store.detect.frames import Picture
from store.detect.remote import RemoteDetectors
from store.detect.runner import DetectFailed

log = logging.getLogger(__name__)
QUEUE_PER_CAMERA = 10  # pictures waiting per camera (2 s at 5 fps): the replay of an event's first GOP fits


class Backend(Protocol):
    """What analyses a picture: store/detect/runner.py LocalDetector, store/detect/remote.py RemoteDetectors."""

    @property
    def busy(self) -> bool:
        """No room for another frame now."""

    @property
    def info(self) -> dict[str, Any]:
        """Device, provider, model, labels: for health."""

    async def detect(self, frame: np.ndarray, min_score: float | None = None, *, camera: str = "unknown",
                     capture_us: int = 0) -> list[Detection]: ...


@dataclass
class CameraQueue:
    queue: deque[Picture] = field(default_factory=lambda: deque(maxlen=QUEUE_PER_CAMERA))
    min_score: float = 0.5  # of its latest event's settings: the detector leaves out what scores less
    in_flight: bool = False  # one of its pictures is with the backend
    frames: int = 0
    dropped: int = 0
    failed: int = 0  # pictures the backend could not analyse
    by_device: dict[str, int] = field(default_factory=dict)  # frames analysed, by the device that did them

    @property
    def missed(self) -> int:
        """Pictures of this camera never analysed: an event's "nothing there" needs this not to have grown."""
        return self.dropped + self.failed

    @property
    def idle(self) -> bool:
        return not self.queue and not self.in_flight


OnResult = Callable[[str, Picture, list[Detection]], Awaitable[None]]


class FrameScheduler:
    def __init__(self, local: Backend | None, on_result: OnResult) -> None:
        self.local = local  # the store's own detector, started (None with --detect off)
        self.remote: RemoteDetectors | None = None  # ``sht detect`` workers: they take the work while connected
        self.on_result = on_result
        self.cameras: dict[str, CameraQueue] = {}
        self.frames = self.dropped = self.errors = 0
        self.last_error: str | None = None
        self.inference_ms: deque[float] = deque(maxlen=200)  # the backend's round trip, as the store waits for it
        self.observe: Callable[[str, str, float], None] | None = None  # (camera, device, seconds): /metrics
        self._ready = asyncio.Event()  # a picture is queued or a backend slot came free
        self._room = asyncio.Event()  # a queue has room again
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()

    def camera(self, name: str) -> CameraQueue:
        return self.cameras.setdefault(name, CameraQueue())

    def backend(self) -> Backend | None:
        if self.remote is not None and self.remote.connected:
            return self.remote
        return self.local

    # ---- pictures in ----

    def deliver(self, picture: Picture) -> None:
        """A live picture: never waits; a full queue loses its oldest (counted)."""
        cam = self.camera(picture.camera)
        if len(cam.queue) == cam.queue.maxlen:
            cam.dropped += 1
            self.dropped += 1
        cam.queue.append(picture)
        self._ready.set()

    async def put(self, picture: Picture) -> None:
        """A picture read back from a recording: waits for room in its camera's queue."""
        cam = self.camera(picture.camera)
        while len(cam.queue) >= QUEUE_PER_CAMERA:
            self._room.clear()
            await self._room.wait()
        cam.queue.append(picture)
        self._ready.set()

    async def drain(self, camera: str, timeout_s: float = 12.0) -> bool:
        """Wait (bounded: longer than a hung detector's timeout) until the camera's pictures are analysed; True
        when they were."""
        cam = self.camera(camera)
        deadline = time.monotonic() + timeout_s
        # Polls a queue, the frame in flight and a deadline: one Event would not say all three.
        while not cam.idle and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return cam.idle

    # ---- the loop ----

    async def run(self) -> None:
        turn = 0
        while True:
            backend = self.backend()
            names = list(self.cameras)
            for i in range(len(names)):
                camera = names[(turn + i) % len(names)]
                cam = self.cameras[camera]
                if cam.in_flight or not cam.queue:
                    continue
                if backend is None:  # no detector of the store's own and no worker: nothing can be analysed
                    cam.dropped += len(cam.queue)
                    self.dropped += len(cam.queue)
                    cam.queue.clear()
                    self._room.set()
                    continue
                if backend.busy or self._in_flight >= max(1, getattr(backend, "capacity", 1)):
                    break  # counted here too: a backend marks itself busy only once its detect() has run
                cam.in_flight = True
                self._in_flight += 1
                turn = (turn + i + 1) % len(names)
                picture = cam.queue.popleft()
                self._room.set()
                task = asyncio.create_task(self._analyse(camera, cam, picture, backend))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _analyse(self, camera: str, cam: CameraQueue, picture: Picture, backend: Backend) -> None:
        started = time.perf_counter()
        try:
            detections = await backend.detect(picture.rgb, cam.min_score, camera=camera,
                                              capture_us=picture.capture_us)
        except Exception as exc:  # DetectFailed, or a backend bug: that frame is lost, detection goes on
            cam.failed += 1
            self.errors += 1
            self.last_error = str(exc) if isinstance(exc, DetectFailed) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, DetectFailed):
                log.exception("detector failed on a frame of %s", camera)
            return
        finally:
            cam.in_flight = False
            self._in_flight -= 1
            self._ready.set()
        elapsed = time.perf_counter() - started
        device = str(backend.info.get("device") or "cpu")
        self.inference_ms.append(elapsed * 1000)
        if self.observe is not None:
            self.observe(camera, device, elapsed)
        self.frames += 1
        cam.frames += 1
        cam.by_device[device] = cam.by_device.get(device, 0) + 1
        try:
            await self.on_result(camera, picture, detections)
        except Exception:
            log.exception("detections of a frame of %s could not be used", camera)
