"""Object detection in the store: which events are analysed, from which frames, and what they learn.

While a motion event of a camera is open (the node tells the store when it
opens: docs/protocol.md), the camera's feed (store/detect/frames.py) decodes
its live stream from the last keyframe on and hands over one picture every
1/``fps`` seconds of capture time from the event's start; the scheduler
(store/detect/scheduler.py) gives them to a detector; the detections go to the
event's analysis (store/detect/labelling.py). A new or better label is written
to the index at once; the snapshot follows (at most every ``SNAPSHOT_EVERY_S``,
and at the end). An event the store could not watch live (it heard of it only
once it had ended, or no live frame could be had) is analysed from its stored
segments instead, the same way.

At an event's end the node of an ``objects``-mode camera is told the verdict:
its label, or "none" only when the event was watched whole (no frame of it
lost, the model knows every label the camera looks for): a verdict of "none"
lets the node drop the footage, so silence is the answer whenever in doubt.

A detector that fails on a frame, crashes or hangs costs that frame (counted,
shown in /health); recording, live video and the event's motion meaning are
never touched by it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import av
import numpy as np

from shared.detect.result import Detection
from shared.metrics import Family
from shared.protocol.detector_health import DetectorHealth
from shared.protocol.ingest import EventRecord
from shared.settings import CameraSettings
from store.detect.frames import CameraFeed, Picture, to_rgb
from store.detect.labelling import EventAnalysis, ZoneCheck
from store.detect.reports import detector_health, metric_families
from store.detect.scheduler import Backend, FrameScheduler
from store.detect.snapshot import snapshot_jpeg
from store.detect.tracker import StationaryMemory
from store.index.event_labels import set_event_labelling, set_event_snapshot
from store.index.query import segments_for_range
from store.ingest.events import EventNotice
from store.live.relay import Relay
from store.media.segment_file import SegmentFileError
from store.segments import SegmentStore, name_of
from store.segments.files import FileSegments

log = logging.getLogger(__name__)

DETECT_FPS = 5.0
SNAPSHOT_EVERY_S = 2.0
STALE_S = 120.0  # an open event whose camera gave no picture this long (its node died mid-event) is finished
CLOSE_GRACE_S = 1.0  # after an event closes, this long for its last frames to be decoded and queued
RECORDING_WAIT_S = 60.0  # for the segments of an event analysed from its recording to arrive
RECORDING_MAX_S = 30.0  # of an event's recording, at most this much from its start is analysed
FINISHED_REMEMBERED = 10_000
WATCH_EVERY_S = 1.0  # how often the cameras the store knows are looked at (feeds to open or close; stale events)
SETTINGS_EVERY_S = 5.0  # how often a camera's objects setting is read again for that
DETECT_MODES = ("off", "local")


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
class WatchedCamera:
    """A camera the store detects on: its feed and its events being analysed."""

    feed: CameraFeed | None = None
    stream: str | None = None  # main or sub: the stream the feed holds
    analyses: list[EventAnalysis] = field(default_factory=list)
    next_us: int = 0  # capture time of the next live picture wanted
    labelled: int = 0


Settings = Callable[[str], Awaitable[CameraSettings]]


class DetectionService:
    def __init__(self, conn: aiosqlite.Connection, relay: Relay, settings: Settings, local: Backend | None,
                 options: DetectOptions | None = None,
                 substream: Callable[[str], bool | None] = lambda camera: None,
                 zones: Callable[[str], ZoneCheck] = lambda camera: (lambda label, box: True),
                 on_label: Callable[[int, str, int, str | None], None] | None = None,
                 root: Path | None = None, segments: SegmentStore | None = None) -> None:
        """``settings(camera)``: the camera's CameraSettings. ``local``: the store's own detector, started (None
        with ``--detect off``). ``on_label(event_id, camera, start_us, label)``: an event's first label, or None
        once a fully watched event ended with none (``objects``-mode nodes decide by it)."""
        self.conn, self.relay, self.settings = conn, relay, settings
        self.options = options or DetectOptions()
        self.substream, self.zones, self.on_label = substream, zones, on_label
        # Where recordings are read from (default: files under ROOT/segments); None: none are.
        self.segments = segments if segments is not None else FileSegments(root) if root is not None else None
        self.scheduler = FrameScheduler(local, self._result)
        self.cameras: dict[str, WatchedCamera] = {}
        self.analyses: dict[int, EventAnalysis] = {}
        self.memory: dict[str, StationaryMemory] = {}
        self.last_error: str | None = None
        self.closed = False
        self._tasks: set[asyncio.Task] = set()
        self._known: Callable[[], list[str]] = list  # the cameras the store knows (set by ``start``)
        self._opening: dict[int, EventRecord | None] = {}  # event id -> its close, if it came while opening
        self._finished: OrderedDict[int, None] = OrderedDict()  # events analysed lately: a late close is not news
        # Told (event id, journal seq) after its labels or snapshot were written (store/notify: an ``update``).
        self.on_written: Callable[[int, int], None] | None = None
        # The notify change journal (store/notify/journal.py): each write is kept there before its commit.
        self.journal: Any = None

    @property
    def local(self) -> Backend | None:
        return self.scheduler.local

    @property
    def remote(self) -> Any:
        return self.scheduler.remote

    @remote.setter
    def remote(self, workers: Any) -> None:
        self.scheduler.remote = workers

    @property
    def observe(self) -> Callable[[str, str, float], None] | None:
        return self.scheduler.observe

    @observe.setter
    def observe(self, callback: Callable[[str, str, float], None] | None) -> None:
        self.scheduler.observe = callback

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
        self._spawn(self.scheduler.run())

    async def close(self) -> None:
        self.closed = True  # no new work from here: ingest may still be running
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.scheduler.close()
        for cam in self.cameras.values():
            if cam.feed is not None:
                await cam.feed.stop()
        closer = getattr(self.local, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.last_error = f"{type(task.exception()).__name__}: {task.exception()}"
            log.error("object detection: %s failed", task.get_name(), exc_info=task.exception())

    # ---- events, from ingest (synchronous: the work goes to tasks) ----

    def event_changed(self, notice: EventNotice) -> None:
        record, event_id = notice.record, notice.event_id
        if record.kind != "motion" or not self.enabled or self.closed:
            return
        analysis = self.analyses.get(event_id)
        if event_id in self._opening:  # its analysis is being set up (reading the camera's settings)
            if not record.open:
                self._opening[event_id] = record
        elif analysis is None and record.open:
            self._opening[event_id] = None
            self._spawn(self._open(event_id, record.camera, record.start_us))
        elif analysis is not None and not record.open:
            analysis.end_us = record.end_us
            self._spawn(self._close_later(analysis))
        elif analysis is None and not record.open and event_id not in self._finished:
            # Heard of only once it had ended (a node older than open events, or the store was away when it
            # opened): its recording is what there is to look at.
            self._spawn(self._from_recording(event_id, record.camera, record.start_us, record.end_us))

    async def _new_analysis(self, event_id: int, camera: str, start_us: int) -> EventAnalysis | None:
        settings = await self.settings(camera)
        if not settings.objects or event_id in self.analyses or self.closed:
            return None
        analysis = EventAnalysis(event_id, camera, start_us, objects=settings.objects,
                                 min_score=settings.min_score, threshold=settings.threshold,
                                 stationary=self.memory.setdefault(camera, StationaryMemory()),
                                 allows=self.zones(camera))
        analysis.missed_at_start = self.scheduler.camera(camera).missed
        analysis.touched = time.monotonic()
        self.analyses[event_id] = analysis
        self.scheduler.camera(camera).min_score = settings.min_score
        return analysis

    async def _open(self, event_id: int, camera: str, start_us: int) -> None:
        try:
            analysis = await self._new_analysis(event_id, camera, start_us)
        finally:
            closed = self._opening.pop(event_id, None)  # its close, if it came meanwhile
        if analysis is None:
            return
        cam = self._watch(camera)
        for older in [a for a in cam.analyses if a.end_us is None and a.start_us < start_us]:
            # Left open by its node (crashed, restarted): the store ended it too (store/ingest/events.py).
            older.end_us = start_us
            await self._finish(older, still_open=True)
        cam.next_us = min(cam.next_us, start_us) if cam.analyses else start_us
        cam.analyses.append(analysis)
        assert cam.feed is not None
        cam.feed.set_decoding(True)
        if closed is not None:
            analysis.end_us = closed.end_us
            self._spawn(self._close_later(analysis))

    async def _close_later(self, analysis: EventAnalysis) -> None:
        await asyncio.sleep(CLOSE_GRACE_S)  # frames up to its end are decoded and queued by now, or never come
        drained = await self.scheduler.drain(analysis.camera)
        await self._finish(analysis, whole=drained)

    async def _finish(self, analysis: EventAnalysis, whole: bool = True, still_open: bool = False) -> None:
        """``whole``: every picture of it that was queued got analysed. ``still_open``: it is still open on its
        node (stale here): its label may come, but no verdict of "none" does."""
        if self.analyses.pop(analysis.event_id, None) is None:
            return
        self._finished[analysis.event_id] = None
        while len(self._finished) > FINISHED_REMEMBERED:
            self._finished.popitem(last=False)
        cam = self.cameras.get(analysis.camera)
        if cam is not None and analysis in cam.analyses:
            cam.analyses.remove(analysis)
            if not cam.analyses and cam.feed is not None:
                cam.feed.set_decoding(False)
        analysis.finish()
        if not analysis.frames:
            if not analysis.from_recording and not still_open and analysis.end_us is not None:
                # No live frame could be had (the node's stream away, the detector down): its recording then.
                await self._from_recording(analysis.event_id, analysis.camera, analysis.start_us, analysis.end_us)
            return
        await self._write(analysis, final=True)
        analysis.forget_frames()  # the snapshot is written: the pictures need not stay in memory
        if analysis.label is None and not still_open and whole and self._watched_whole(analysis):
            if self.on_label is not None:
                self.on_label(analysis.event_id, analysis.camera, analysis.start_us, None)

    def _watched_whole(self, analysis: EventAnalysis) -> bool:
        """Enough to say "none of the camera's objects": no picture of the camera lost while it ran, at least
        half the pictures its length calls for (and 3), and a model that knows every label looked for."""
        if self.scheduler.camera(analysis.camera).missed != analysis.missed_at_start:
            return False
        length_s = max(0, (analysis.end_us or analysis.start_us) - analysis.start_us) / 1e6
        if analysis.frames < min(3, max(1, int(length_s * self.options.fps))) or \
                analysis.frames < 0.5 * length_s * self.options.fps:
            return False
        backend = self.scheduler.backend()
        known = set((backend.info if backend is not None else {}).get("labels") or ())
        return bool(known) and analysis.objects <= known

    async def _from_recording(self, event_id: int, camera: str, start_us: int, end_us: int) -> None:
        """Analyse the event from its stored segments (at most ``RECORDING_MAX_S`` from its start), through the
        tracker as live frames are; segments arrive after their events, so wait for them a while."""
        if self.segments is None or self.closed or await self._labelled_already(event_id):
            return  # e.g. the store restarted mid-event: what it wrote before stays
        to_us = min(end_us, start_us + int(RECORDING_MAX_S * 1e6))
        deadline = time.monotonic() + RECORDING_WAIT_S
        while not _covers(rows := await segments_for_range(self.conn, camera, start_us, to_us), start_us, to_us):
            if time.monotonic() > deadline:
                break  # analyse what there is
            await asyncio.sleep(2.0)
        analysis = await self._new_analysis(event_id, camera, start_us)
        if analysis is None:
            return
        analysis.end_us, analysis.from_recording = end_us, True
        step_us = int(1_000_000 / self.options.fps)
        try:
            for path, seg_start, _ in rows:
                name = name_of(path)
                if name is None:
                    continue
                frames = await asyncio.to_thread(_decode_recorded, self.segments, name, seg_start,
                                                 start_us, to_us, step_us)
                for capture_us, rgb in frames:
                    await self.scheduler.put(Picture(camera, capture_us, rgb))
        except (SegmentFileError, OSError, av.FFmpegError) as exc:  # OSError: the storage could not give it
            log.warning("event %d on %s: cannot read its recording: %s", event_id, camera, exc)
        drained = await self.scheduler.drain(camera)
        await self._finish(analysis, whole=drained)

    async def _labelled_already(self, event_id: int) -> bool:
        async with self.conn.execute("SELECT labels IS NOT NULL FROM events WHERE id = ?", (event_id,)) as cur:
            row = await cur.fetchone()
        return bool(row and row[0])

    # ---- feeds ----

    def _watch(self, camera: str) -> WatchedCamera:
        """Hold the camera's stream from now on, so its next event finds it flowing (and its GOP buffered)."""
        cam = self.cameras.setdefault(camera, WatchedCamera())
        if cam.feed is None:
            cam.stream = "sub" if self.substream(camera) else "main"
            cam.feed = CameraFeed(self.relay, camera, cam.stream, functools.partial(self._wanted, camera),
                                  self.scheduler.deliver)
            cam.feed.start()
        return cam

    async def _watch_cameras(self) -> None:
        """Feeds for the cameras that look for objects, none for the others; stale events finished."""
        wanted: dict[str, tuple[float, bool]] = {}  # camera -> (when its settings were read, looks for objects)
        while True:
            try:
                now = time.monotonic()
                known = set(self._known())
                for camera in sorted(known | set(self.cameras)):
                    read_at, looks = wanted.get(camera, (-SETTINGS_EVERY_S, False))
                    if now - read_at >= SETTINGS_EVERY_S:  # one query per camera every few seconds, not every loop
                        looks = bool((await self.settings(camera)).objects)
                        wanted[camera] = (now, looks)
                    await self._keep_feed(camera, camera in known and looks)
                for analysis in list(self.analyses.values()):
                    if not analysis.from_recording and analysis.end_us is None and now - analysis.touched > STALE_S:
                        log.warning("event %d on %s: no picture for %.0f s (its node away?); analysis ends there",
                                    analysis.event_id, analysis.camera, STALE_S)
                        await self._finish(analysis, still_open=True)
            except Exception:  # an index hiccup: the feeds stay as they are until the next round
                log.exception("object detection: watching the cameras failed; trying again")
            await asyncio.sleep(WATCH_EVERY_S)

    async def _keep_feed(self, camera: str, wanted: bool) -> None:
        cam = self.cameras.get(camera)
        if not wanted:
            if cam is not None and cam.feed is not None and not cam.analyses:
                await cam.feed.stop()  # no longer looked at: the node's stream is let go
                cam.feed = None
            return
        stream = "sub" if self.substream(camera) else "main"
        if cam is not None and cam.feed is not None and cam.stream != stream and not cam.analyses:
            await cam.feed.stop()  # the camera gained or lost its sub stream: follow it
            cam.feed = None
        self._watch(camera)

    def _wanted(self, camera: str, capture_us: int) -> bool:
        """From the decode thread: is this frame one to analyse? (Sampling at ``fps`` of capture time.)"""
        cam = self.cameras.get(camera)
        if cam is None or capture_us < cam.next_us or not any(a.wants(capture_us) for a in list(cam.analyses)):
            return False
        cam.next_us = capture_us + int(1_000_000 / self.options.fps)
        return True

    # ---- results ----

    async def _result(self, camera: str, picture: Picture, detections: list[Detection]) -> None:
        for analysis in [a for a in self.analyses.values() if a.camera == camera]:
            if not analysis.wants(picture.capture_us):
                continue
            analysis.touched = time.monotonic()
            changed = analysis.add(picture.capture_us, picture.rgb, detections)
            if changed or analysis.frames == 1:  # the first frame: from now on it reads "analysed" ({} until a label)
                await self._write(analysis, final=False)
                if analysis.label is not None and not analysis.announced:
                    analysis.announced = True
                    self.cameras.setdefault(camera, WatchedCamera()).labelled += 1
                    if self.on_label is not None:
                        self.on_label(analysis.event_id, camera, analysis.start_us, analysis.label)

    async def _write(self, analysis: EventAnalysis, final: bool) -> None:
        event_id = analysis.event_id
        if not await self._journalled(event_id, "labels",
                                      lambda: set_event_labelling(self.conn, event_id, analysis.labelling())):
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
        except Exception:
            log.exception("could not make the snapshot of event %d", event_id)
            return
        frame_us = best.capture_us
        await self._journalled(event_id, "snapshot",
                               lambda: set_event_snapshot(self.conn, event_id, frame_us, width, height, jpeg))

    async def _journalled(self, event_id: int, what: str, write: Callable[[], Awaitable[None]]) -> bool:
        """The write, kept first in the notify change journal (a store killed right after the commit still
        notifies it), then told to ``on_written``; False (logged) when it failed."""
        seq = await self.journal.labelled(event_id) if self.journal is not None else 0
        try:
            await write()
        except BaseException as exc:  # not committed: nothing will report the record
            if self.journal is not None:
                self.journal.abandon((seq,))
            if not isinstance(exc, Exception):
                raise
            log.exception("could not store the %s of event %d", what, event_id)
            return False
        if self.on_written is not None:
            try:
                self.on_written(event_id, seq)
            except Exception:  # written and kept; a listener's bug must not cost the analysis
                log.exception("the listener of event %d's labels failed", event_id)
        return True

    # ---- reports ----

    def health(self) -> DetectorHealth:
        active = {name: bool(c.analyses) for name, c in self.cameras.items()}
        labelled = {name: c.labelled for name, c in self.cameras.items()}
        streams = {name: c.stream for name, c in self.cameras.items()}
        return detector_health(self.scheduler, self.enabled, active, labelled, streams, self.last_error)

    def metric_families(self) -> Iterator[Family]:
        return metric_families(self.scheduler, {name: c.labelled for name, c in self.cameras.items()})


def _covers(rows: list[tuple[str, int, int]], from_us: int, to_us: int) -> bool:
    """Do the segments cover [from_us, to_us) without a gap (of more than a frame or so)?"""
    at = from_us
    for _, start, end in rows:
        if start > at + 200_000:
            return False
        at = max(at, end)
    return at >= to_us - 200_000


def _decode_recorded(segments: SegmentStore, name: str, segment_start_us: int, from_us: int, to_us: int,
                     step_us: int) -> list[tuple[int, np.ndarray]]:
    """Worker thread: one picture every ``step_us`` of capture time in [from_us, to_us) of a stored segment."""
    out: list[tuple[int, np.ndarray]] = []
    next_us = from_us
    # The whole object (open_local), not ranged reads (open_media): this decodes from the segment's start up to the
    # event's end, most of its bytes, and the next events of a camera often fall in the same segment, which the
    # disk cache (256 MiB) then serves; ranged reads would cost more GETs for the same bytes.
    with segments.open_local(name) as path, av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            capture_us = segment_start_us + round(frame.pts * frame.time_base * 1_000_000)
            if capture_us >= to_us:
                break
            if capture_us >= next_us:
                out.append((capture_us, to_rgb(frame)))
                next_us = capture_us + step_us
    return out
