"""The recorder: a subscriber per camera that cuts segments, muxes them and spools them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from node.master import Camera
from node.segmenter import FinishedSegment, Segmenter, build_segment
from node.spool import Spool, SpooledSegment

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        node_id: str,
        camera: Camera,
        segment_seconds: float,
        spool: Spool,
        on_spooled: Callable[[SpooledSegment], None],
    ) -> None:
        self.node_id = node_id
        self.camera = camera
        self.spool = spool
        self.on_spooled = on_spooled
        cfg = camera.config
        self.segmenter = Segmenter(camera.id, segment_seconds, cfg.fps)
        # Enough room for three whole segments: the recorder only falls this far
        # behind if the disk stalls, and then it resumes at a keyframe; the frames it
        # skipped are reported as ``frames_skipped`` in /health.
        capacity = int(cfg.fps * segment_seconds * 3) + 10
        self.subscription = camera.subscribe("recorder", capacity)
        self.segments_spooled = 0
        self.segments_failed = 0

    async def run(self) -> None:
        while True:
            unit = await self.subscription.get()
            if unit is None:
                break
            finished = self.segmenter.push(unit)
            if finished is not None:
                await self._save(finished)
        last = self.segmenter.flush()
        if last is not None:
            await self._save(last)

    async def _save(self, segment: FinishedSegment) -> None:
        cfg = self.camera.config
        try:
            item = await asyncio.to_thread(self._build_and_spool, segment, cfg.width, cfg.height, cfg.fps)
        except Exception as exc:  # a full disk or a muxer error must not stop recording
            self.segments_failed += 1
            log.error("camera %s: LOST segment at %d (%d frames): could not spool it: %s",
                      self.camera.id, segment.start_us, len(segment.units), exc)
            return
        self.segments_spooled += 1
        self.on_spooled(item)

    def _build_and_spool(self, segment: FinishedSegment, width: int, height: int,
                         fps: float) -> SpooledSegment:
        header, data = build_segment(self.node_id, segment, width, height, fps)
        return self.spool.put(header, data)

    def health(self) -> dict:
        return {"segments_spooled": self.segments_spooled,
                "segments_failed": self.segments_failed,
                "frames_skipped": self.subscription.skipped}
