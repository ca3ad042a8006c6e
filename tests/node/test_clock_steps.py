"""The wall clock steps back 30 s and forward 1 h while a camera records (docs/time.md).

A real camera (synthetic source, real encoder) stamps through a ``TimeBase`` whose
wall clock the test steps; the recorder cuts, muxes and spools; a real store
``Ingestor`` takes every segment. Then: no two segments of the camera overlap,
no identity repeats, nothing is refused (no ``conflict``) or lost, ``sht store
check`` finds nothing, and the coverage timeline shows the hour the clock jumped
over as a gap, while the 30 s it went back leave none. A second run on the same
spool, booted with its clock 10 minutes behind, records after the first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from node.capture.master import Camera
from node.capture.timebase import TimeBase
from node.recording.recorder import Recorder
from node.recording.spool import Spool, SpooledSegment
from shared.clock import now_us
from shared.config import CameraConfig
from shared.protocol.health import ClockHealth
from shared.protocol.ingest import Ack
from shared.protocol.query import TimelineParams, TimeRange
from store.index.db import Index
from store.index.timeline import timeline
from store.ingest.writer import Ingestor
from store.maintenance.check import check_store
from store.maintenance.coverage import refresh_all

S = 1_000_000
HOUR = 3600 * S


class SteppableWall:
    def __init__(self) -> None:
        self.shift = 0

    def __call__(self) -> int:
        return now_us() + self.shift


async def record(spool: Spool, wall: SteppableWall, phases: list[tuple[float, int]]) -> tuple[
        list[SpooledSegment], list[tuple], Camera]:
    """Record cam0 for each (seconds, then shift the wall clock by) phase; what was spooled and lost."""
    camera = Camera(CameraConfig(id="cam0", source="synthetic", width=160, height=90, fps=10),
                    timebase=TimeBase(wall_us=wall))
    spooled: list[SpooledSegment] = []
    lost: list[tuple] = []

    async def on_spooled(item: SpooledSegment) -> None:
        spooled.append(item)

    async def on_lost(*report: object) -> None:
        lost.append(report)

    recorder = Recorder("node0", camera, 1.0, spool, on_spooled, on_lost)
    task = asyncio.create_task(recorder.run())
    camera.start(asyncio.get_running_loop())
    for seconds, shift in phases:
        await asyncio.sleep(seconds)
        wall.shift += shift
    await camera.stop()
    await task
    assert recorder.segments_failed == 0
    return spooled, lost, camera


async def ingest(root: Path, index: Index, spooled: list[SpooledSegment]) -> None:
    ingestor = Ingestor(root, index)
    for item in spooled:
        reply = await ingestor.ingest(item.header, memoryview(item.media_path.read_bytes()))
        assert reply == Ack(item.header.segment_id), reply  # no conflict, no duplicate, nothing set aside
    assert ingestor.stats.refused == 0


def assert_no_overlaps(spooled: list[SpooledSegment]) -> list[tuple[int, int]]:
    spans = sorted((s.header.start_us, s.header.end_us) for s in spooled)
    assert len({start for start, _ in spans}) == len(spans)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"segments overlap: one ends at {end}, the next starts at {start}"
    return spans


async def scenario(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    wall = SteppableWall()
    began = now_us()
    spooled, lost, camera = await record(spool, wall, [(2.5, -30 * S), (2.5, HOUR), (2.5, 0)])
    assert not lost
    spans = assert_no_overlaps(spooled)
    assert camera.health().clock == ClockHealth(offset_us=0, steps_forward=1, steps_back=1)
    # The 30 s back: stamps ran on (a small slew), no gap. The hour forward: one gap of about an hour.
    gaps = [b_start - a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)]
    assert sum(g > S for g in gaps) == 1 and max(gaps) > HOUR - 30 * S - 5 * S
    assert spans[-1][1] - spans[0][0] > HOUR - 30 * S  # recording went on after the jump
    assert len([s for s in spans if s[0] > began + HOUR - 60 * S]) >= 2

    # A restart on the same spool with the clock 10 minutes behind what was recorded.
    wall.shift -= HOUR + 10 * 60 * S
    more, lost, camera = await record(spool, wall, [(2.5, 0)])
    assert not lost and min(s.header.start_us for s in more) >= spans[-1][1]
    clock = camera.health().clock
    assert clock is not None and clock.steps_back == 1
    everything = spooled + more
    assert_no_overlaps(everything)

    root = tmp_path / "store"
    root.mkdir()
    index = await Index.open(root / "index.sqlite3")
    try:
        await ingest(root, index, everything)
        report = await check_store(root, index)
        assert report.ok and report.rows == len(everything), report.problems
        await refresh_all(index.conn, spans[-1][1] + 2 * HOUR)
        lo = spans[0][0] // HOUR * HOUR
        shown = await timeline(index.conn, TimelineParams("cam0", TimeRange(lo, lo + 3 * HOUR)))
        inner_gaps = [(a, b) for a, b in shown.gaps if a > spans[0][0] and b < spans[-1][1]]
        assert len(inner_gaps) == 1 and inner_gaps[0][1] - inner_gaps[0][0] > HOUR - 40 * S, shown.gaps
    finally:
        await index.close()


def test_clock_steps_back_and_forward_while_recording(tmp_path):
    asyncio.run(scenario(tmp_path))
