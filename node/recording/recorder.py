"""The recorder: a subscriber per camera that journals, cuts, muxes and spools segments.

Every access unit goes to the segment's journal (fsynced at each keyframe) as
well as to the segmenter; a finished segment is muxed and spooled atomically
and only then is its journal dropped. Footage that cannot be spooled is
reported as a loss, never dropped silently. When the camera stalls (a Pi camera
that stopped giving frames, ``Camera.state == "stalled"``) the segment in
progress is finished and spooled at once: the footage up to the stall is
uploaded while the camera is out, however long that is, not when frames return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from node.capture.master import Camera
from node.recording.journal import JournalHeader, JournalWriter
from node.recording.segmenter import FinishedSegment, Segmenter, build_segment
from node.recording.spool import Spool, SpooledSegment
from shared.protocol.health import RecordingHealth

log = logging.getLogger(__name__)
STALL_CHECK_S = 1.0  # how often, with no unit coming, the recorder looks whether its camera stalled

# (camera, start_us, end_us, frames, why) of footage that could not be kept
LossReport = Callable[[str, int, int, int, str], Awaitable[None]]


class Recorder:
    def __init__(
        self,
        node_id: str,
        camera: Camera,
        segment_seconds: float,
        spool: Spool,
        on_spooled: Callable[[SpooledSegment], Awaitable[None]],
        on_lost: LossReport,
    ) -> None:
        self.node_id = node_id
        self.camera = camera
        self.spool = spool
        self.on_spooled, self.on_lost = on_spooled, on_lost
        cfg = camera.config
        self.segmenter = Segmenter(camera.id, segment_seconds, cfg.fps)
        # After what this camera already recorded, even if the clock went back across a restart (docs/time.md):
        # set before the camera starts, so one small read here.
        camera.timebase.raise_floor(spool.time_floor(camera.id))
        self.journal_header = JournalHeader(node_id, camera.id, cfg.width, cfg.height, cfg.fps, camera.codec)
        # Enough room for three whole segments: the recorder only falls this far
        # behind if the disk stalls, and then it resumes at a keyframe; the frames it
        # skipped are reported as ``frames_skipped`` in /health.
        capacity = int(cfg.fps * segment_seconds * 3) + 10
        self.subscription = camera.subscribe("recorder", capacity)
        self._journal: JournalWriter | None = None
        self.segments_spooled = 0
        self.segments_failed = 0
        self.journal_errors = 0

    async def run(self) -> None:
        while True:
            try:
                unit = await asyncio.wait_for(self.subscription.get(), STALL_CHECK_S)  # get() is cancel-safe
            except TimeoutError:
                await self._finish_if_stalled()
                continue
            if unit is None:
                break
            if unit.keyframe:
                await self._flush_journal()  # the GOP before this keyframe is now durable
            finished = self.segmenter.push(unit)
            if finished is not None:
                done_journal, self._journal = self._journal, None
                self._start_journal(unit.capture_us)
                await self._save(finished, done_journal)
            elif self._journal is None and unit.keyframe:
                self._start_journal(unit.capture_us)
            if self._journal is not None:
                self._journal.add(unit)
        last = self.segmenter.flush()
        done_journal, self._journal = self._journal, None
        if last is not None:
            await self._save(last, done_journal)

    async def _finish_if_stalled(self) -> None:
        """Spool the segment in progress now if the camera stalled: the first frame after the stall is a
        keyframe (node/capture/thread.py) and starts the next one."""
        if self.camera.state != "stalled":
            return
        finished = self.segmenter.flush()
        done_journal, self._journal = self._journal, None
        if finished is not None:
            log.info("camera %s stalled: spooling its segment up to the stall (%d frames)", self.camera.id,
                     len(finished.units))
            await self._save(finished, done_journal)
        elif done_journal is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(done_journal.discard)

    def _start_journal(self, start_us: int) -> None:
        cfg = self.camera.config  # a stream source may have replaced the configured size and rate with its own
        self.journal_header = JournalHeader(self.node_id, self.camera.id, cfg.width, cfg.height, cfg.fps,
                                            self.camera.codec)
        self.segmenter.frame_interval_us = int(round(1_000_000 / cfg.fps))
        self._journal = JournalWriter(self.spool.journal_path(self.camera.id, start_us), self.journal_header)

    async def _flush_journal(self) -> None:
        journal = self._journal
        if journal is None:
            return
        try:
            await asyncio.to_thread(journal.write, journal.take())
        except OSError as exc:
            # The segment itself is still whole in memory; only crash protection is missing.
            self.journal_errors += 1
            log.error("camera %s: journal write failed (%s); a crash now would lose this segment",
                      self.camera.id, exc)

    async def _save(self, segment: FinishedSegment, journal: JournalWriter | None) -> None:
        cfg = self.camera.config
        try:
            item = await asyncio.to_thread(self._build_and_spool, segment, cfg.width, cfg.height, cfg.fps)
        except Exception as exc:  # a full disk or a muxer error must not stop recording
            self.segments_failed += 1
            log.error("camera %s: LOST segment at %d (%d frames): could not spool it: %s",
                      self.camera.id, segment.start_us, len(segment.units), exc)
            if journal is not None:
                # Counted as lost below, so it must not come back from its journal later.
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(journal.discard)
            await self.on_lost(self.camera.id, segment.start_us, segment.end_us, len(segment.units),
                               f"could not spool the segment: {exc}")
            return
        self.segments_spooled += 1
        try:
            if journal is not None:
                await asyncio.to_thread(journal.discard)
            await self.on_spooled(item)
        except Exception:  # the segment is durable in the spool and uploads on the next start at worst
            log.exception("camera %s: handing on spooled segment %s failed; it stays in the spool",
                          self.camera.id, item.header.segment_id)

    def _build_and_spool(self, segment: FinishedSegment, width: int, height: int,
                         fps: float) -> SpooledSegment:
        header, data = build_segment(self.node_id, segment, width, height, fps, self.camera.codec)
        return self.spool.put(header, data)

    def health(self) -> RecordingHealth:
        """The recorder's counts; the motion-mode gate adds its own (node/recording/modes.py)."""
        return RecordingHealth(segments_spooled=self.segments_spooled, segments_failed=self.segments_failed,
                               frames_skipped=self.subscription.skipped, journal_errors=self.journal_errors)
