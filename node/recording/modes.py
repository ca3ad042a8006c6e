"""Recording modes: which spooled segments go to the uploader, and how much of each.

``continuous`` hands every segment over as soon as it is spooled. ``motion``
holds each one in its camera's gate (node/recording/roll.py) until it is known
whether an event wants it: wanted ones are trimmed to the keyframe intervals the
events want (node/recording/trim.py) and handed over, the rest are removed from
the spool (not a loss: that is the mode). Held segments are already durable, so
a crash loses no decision that matters: they are uploaded whole on the next start.

``objects`` is ``motion`` where the store's verdict on each event (over the
control link: ``event_label``) decides: an event it analysed and found none of
the camera's objects in (label null) lets its footage go like quiet footage;
one with a label, one with no verdict by the end of a grace period after its
end (counted: ``kept_without_verdict``), and every event while the store is out
of reach keep their footage as in ``motion`` (node/recording/roll.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import av

from node.recording.roll import RecordingGate
from node.recording.spool import Spool, SpooledItem, SpooledSegment
from node.recording.trim import trim_segment
from shared.clock import now_us
from shared.protocol.health import RecordingHealth
from shared.protocol.ingest import EventRecord
from shared.settings import CONTINUOUS, MOTION, OBJECTS_MODE

log = logging.getLogger(__name__)

DECIDE_EVERY_S = 1.0

Span = tuple[int, int]


class UploadQueue(Protocol):
    """What this module needs of node/store_link/uploader.py."""

    def add(self, item: SpooledItem) -> None: ...

    async def add_and_enforce(self, item: SpooledSegment) -> None: ...


class RecordingModes:
    """Each camera's recording mode and, in ``motion`` mode, its gate of held segments."""

    def __init__(self, cameras: Iterable[str], spool: Spool, uploads: UploadQueue,
                 clock: Callable[[], int] = now_us,
                 camera_clocks: Mapping[str, Callable[[], int]] | None = None) -> None:
        """``camera_clocks``: "now" in each camera's time base (``TimeBase.now_us``), the time its segments and
        events are stamped in; it runs apart from the wall clock after a clock step (docs/time.md), and a gate
        judged by the wall clock would drop a pre-roll an event still wants. ``clock`` for the others."""
        self.spool = spool
        self.clock = clock
        self.camera_clocks = dict(camera_clocks or {})
        self.uploads = uploads
        cameras = list(cameras)
        self.modes: dict[str, str] = {c: CONTINUOUS for c in cameras}  # until the store says otherwise
        self.gates: dict[str, RecordingGate[SpooledSegment]] = {c: RecordingGate() for c in cameras}
        self.discarded_quiet: dict[str, int] = {c: 0 for c in cameras}
        self.trimmed_bytes: dict[str, int] = {c: 0 for c in cameras}
        self._event_tasks: set[asyncio.Task] = set()
        # objects mode: can a verdict come now? (the node's links to the store are up); False: as motion mode
        self.store_reachable: Callable[[], bool] = lambda: False
        self.verdicts_heard: dict[str, int] = {c: 0 for c in cameras}
        self._missed_logged: set[str] = set()

    def set_mode(self, camera: str, mode: str) -> None:
        """Takes effect at the next decision (within a second): a switch to continuous releases what is held."""
        self.modes[camera] = mode
        if camera in self.gates:
            self.gates[camera].require_label = mode == OBJECTS_MODE

    def motion_mode(self, camera: str) -> bool:
        """Are segments held in the gate (``motion`` and ``objects`` modes)?"""
        return self.modes.get(camera) in (MOTION, OBJECTS_MODE)

    def event_label(self, camera: str, start_us: int, label: str | None) -> None:
        """The store's verdict on the event of ``camera`` that started at ``start_us`` (control link, on the event
        loop): ``label`` found, or None (analysed once over, none found). In objects mode it takes effect at the
        next decision (within a second): a label keeps the event's footage, None lets it go."""
        gate = self.gates.get(camera)
        if gate is None:
            log.warning("store sent a verdict for %s, which is not on this node", camera)
            return
        self.verdicts_heard[camera] += 1
        if not gate.event_labelled(start_us, label):
            log.info("camera %s: verdict 'none found' on the event at %d not taken (the event is still open, "
                     "already decided, or kept without a verdict): its footage stays", camera, start_us)

    async def segment_spooled(self, item: SpooledSegment) -> None:
        """The recorder's hand-off of each finished, durable segment."""
        h = item.header
        if self.motion_mode(h.camera):
            self.gates[h.camera].hold(h.start_us, h.end_us, item)
            await self.decide(h.camera)
        else:
            await self.uploads.add_and_enforce(item)

    def motion_started(self, camera: str, start_us: int, ongoing: EventRecord | None = None) -> None:
        """From the motion worker, on the event loop. ``ongoing``: the event as known so far, which goes to the
        store at once, open (the store's object detection starts on it); spooled in a task."""
        self.gates[camera].event_started(start_us)
        if ongoing is not None:
            self._spool_event(dataclasses.replace(ongoing, open=True))

    def motion_finished_soon(self, record: EventRecord) -> None:
        """From the motion worker, on the event loop: the gate hears of the end now, in order with the next
        start; spooling the event and deciding happen in a task."""
        self.gates[record.camera].event_finished(record.start_us, record.end_us)
        task = asyncio.create_task(self.motion_finished(record))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def motion_finished(self, record: EventRecord) -> None:
        await self._put_event(record)
        await self.decide(record.camera)

    def _spool_event(self, record: EventRecord) -> None:
        task = asyncio.create_task(self._put_event(record))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _put_event(self, record: EventRecord) -> None:
        try:
            self.uploads.add(await asyncio.to_thread(self.spool.put_event, record))
        except OSError as exc:
            log.error("could not spool %smotion event %s: %s", "open " if record.open else "", record.record_id,
                      exc)

    async def decide(self, camera: str) -> None:
        """Upload the held segments an event wants; drop those none can want."""
        gate = self.gates[camera]
        if self.motion_mode(camera):
            gate.verdicts_expected = self.store_reachable()
            missed = gate.kept_without_verdict
            await self._settle(camera, *gate.decide_spans(self.camera_clocks.get(camera, self.clock)()))
            if gate.kept_without_verdict > missed:
                self._log_missed(camera, gate.label_grace_us)
        else:
            await self._settle(camera, [(item, None) for item in gate.release_all()], [])

    async def run(self) -> None:
        """Decide every second: a held segment's fate also changes with time alone."""
        while True:
            await asyncio.sleep(DECIDE_EVERY_S)
            for camera in self.gates:
                try:
                    await self.decide(camera)
                except Exception:  # held segments stay held (and durable); try again next second
                    log.exception("camera %s: motion-mode decision failed", camera)

    async def finish(self) -> None:
        """At a clean stop, once the recorders and detectors are done: every held segment's fate is known."""
        await asyncio.gather(*self._event_tasks)  # events closed by the stop are spooled too
        for camera, gate in self.gates.items():
            if self.motion_mode(camera):  # an event still waiting for its label keeps its footage
                await self._settle(camera, *gate.finish_spans(self.camera_clocks.get(camera, self.clock)()))
            else:
                await self._settle(camera, [(item, None) for item in gate.release_all()], [])

    def _log_missed(self, camera: str, grace_us: int) -> None:
        level = logging.DEBUG if camera in self._missed_logged else logging.WARNING  # once a camera, not each event
        self._missed_logged.add(camera)
        log.log(level, "camera %s (objects mode): no verdict from the store's object detection within %.0f s of an "
                "event's end, so its footage is kept as in motion mode (counted in recording.kept_without_verdict; "
                "is detection on in the store, and the camera's objects setting not empty? docs/objects.md)",
                camera, grace_us / 1e6)

    async def _settle(self, camera: str, keep: Sequence[tuple[SpooledSegment, Span | None]],
                      discard: Sequence[SpooledSegment]) -> None:
        for item, span in keep:
            if span is not None:
                item = await asyncio.to_thread(self._trim, item, span)
            await self.uploads.add_and_enforce(item)
        for item in discard:
            await asyncio.to_thread(self.spool.remove, item)
            self.discarded_quiet[camera] += 1

    def _trim(self, item: SpooledSegment, span: Span) -> SpooledSegment:
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

    def health(self, camera: str, recorder: RecordingHealth | None = None) -> RecordingHealth:
        """The camera's ``recording`` in the node's /health: its recorder's counts and this gate's."""
        gate = self.gates[camera]
        return dataclasses.replace(recorder or RecordingHealth(), held=len(gate.held),
                                   discarded_quiet=self.discarded_quiet[camera],
                                   trimmed_bytes=self.trimmed_bytes[camera],
                                   kept_without_verdict=gate.kept_without_verdict)
