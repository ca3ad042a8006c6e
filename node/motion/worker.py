"""A camera's motion detector on its own thread, fed by the capture thread, reporting to the loop.

The capture thread hands over each fresh ``av.VideoFrame`` (luma detector) or
each encoded access unit (motion-vector detector) through a bounded queue; if
the detector falls behind, frames are dropped and counted, never waited for.
Event starts and finished events go to the event loop with
``call_soon_threadsafe``, where the node records and uploads them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable

import av

from node.capture.encode import EncodedUnit
from node.motion.config import DetectorConfig, make_detector, make_tracker
from node.motion.luma import LumaDetector
from node.sources.base import plane_view
from shared.protocol.health import MotionHealth
from shared.protocol.ingest import EventRecord

log = logging.getLogger(__name__)
QUEUE_SECONDS = 2.0


class MotionWorker(threading.Thread):
    def __init__(self, camera: str, node: str, config: DetectorConfig, width: int, height: int, fps: float,
                 loop: asyncio.AbstractEventLoop, on_started: Callable[[str, int, EventRecord], None],
                 on_finished: Callable[[EventRecord], None]) -> None:
        super().__init__(name=f"motion-{camera}", daemon=True)
        self.camera, self.config = camera, config
        self.detector = make_detector(config, width, height, fps)
        self.tracker = make_tracker(config, camera, node)
        self.wants_frames = isinstance(self.detector, LumaDetector)
        self._queue: queue.Queue[tuple[int, object] | None] = queue.Queue(maxsize=int(fps * QUEUE_SECONDS) + 2)
        self._loop, self._on_started, self._on_finished = loop, on_started, on_finished
        self.frames = self.dropped = self.events = 0
        self.cpu_s = 0.0
        self.error: str | None = None
        self.active = False  # an event is open (written by the worker, read by /health)

    # ---- called from the capture thread: never block ----

    def offer_frame(self, frame: av.VideoFrame, capture_us: int) -> None:
        if self.wants_frames:
            self._offer(capture_us, frame)

    def offer_unit(self, unit: EncodedUnit) -> None:
        if not self.wants_frames:
            self._offer(unit.capture_us, unit)

    def _offer(self, capture_us: int, item: object) -> None:
        try:
            self._queue.put_nowait((capture_us, item))
        except queue.Full:
            self.dropped += 1

    # ---- from the loop ----

    def set_sensitivity(self, value: float) -> None:
        self.detector.sensitivity = value  # a float attribute: takes effect on the next frame

    def stop(self) -> None:
        self._queue.put(None)  # blocks only if full; the worker drains it promptly
        self.join(timeout=5)

    # ---- the thread ----

    def run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                capture_us, payload = item
                started = time.thread_time()
                if isinstance(payload, av.VideoFrame):
                    sample = self.detector.detect_frame(plane_view(payload, 0))  # type: ignore[union-attr]
                else:
                    unit: EncodedUnit = payload  # type: ignore[assignment]
                    sample = self.detector.feed(unit.data, unit.keyframe, unit.capture_us)  # type: ignore[union-attr]
                was_open = self.tracker.ongoing() is not None
                finished = self.tracker.update(capture_us, sample)
                self.cpu_s += time.thread_time() - started
                self.frames += 1
                self._report(finished, was_open)
            self._report(self.tracker.flush(), was_open=True)
        except Exception as exc:  # a detector bug must not take recording down with it
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: motion detection stopped", self.camera)

    def _report(self, finished: list[EventRecord], was_open: bool) -> None:
        for record in finished:
            self.events += 1
            self._loop.call_soon_threadsafe(self._on_finished, record)
        ongoing = self.tracker.ongoing()
        self.active = ongoing is not None
        if ongoing is not None and (not was_open or finished):
            # With the event as known so far (score, box): the node sends it to the store open at once.
            self._loop.call_soon_threadsafe(self._on_started, self.camera, ongoing.start_us, ongoing)

    def health(self) -> MotionHealth:
        return MotionHealth(detector=self.config.kind, sensitivity=self.detector.sensitivity, frames=self.frames,
                            dropped=self.dropped, events=self.events, active=self.active,
                            cpu_ms_per_frame=round(1000 * self.cpu_s / self.frames, 3) if self.frames else None,
                            error=self.error)
