"""What a stalled Pi camera (issue 20) leaves in the recording: the footage up to the stall is spooled while the
camera is out, not when (or if) frames return; the camera is `stopped`, not `stalled`, once stopped. Against
tests/fakes/picamera2 with the node's real capture thread, encoder, recorder and spool."""

from __future__ import annotations

import asyncio
import time

from node.capture.master import Camera
from node.recording.journal import SUFFIX as JOURNAL_SUFFIX
from node.recording.recorder import Recorder
from node.recording.spool import Spool, SpooledSegment
from shared.config import CameraConfig


async def wait_for(predicate, within: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < within, f"no {what} within {within} s"
        await asyncio.sleep(0.05)


def test_the_segment_up_to_a_stall_is_spooled_while_the_camera_is_out(fake, tmp_path):
    spooled: list[tuple[SpooledSegment, str]] = []

    async def run() -> tuple[Camera, Recorder]:
        cam = Camera(CameraConfig(id="cam0", source="picamera2:0", width=320, height=240, fps=10, motion=False))

        async def on_spooled(item: SpooledSegment) -> None:
            spooled.append((item, cam.health().state or ""))

        async def on_lost(*report: object) -> None:
            raise AssertionError(f"footage lost: {report}")

        recorder = Recorder("node0", cam, 60.0, Spool(tmp_path), on_spooled, on_lost)  # no cut for a minute
        task = asyncio.create_task(recorder.run())
        cam.start(asyncio.get_running_loop())
        await wait_for(lambda: cam.stats.frames_encoded >= 10, 5, "frames")
        fake.stall(0, 4.0)
        await wait_for(lambda: cam.health().state == "stalled", 3, "stall")
        await wait_for(lambda: bool(spooled), 2.5, "the segment up to the stall spooled during it")
        assert cam.health().state == "stalled"
        await wait_for(lambda: cam.health().state == "up" and cam.stats.frames_encoded >= 20, 15, "frames again")
        await cam.stop()
        await task
        return cam, recorder

    cam, recorder = asyncio.run(run())
    assert cam.health().state == "stopped"  # not the capture thread's last "stalled"
    (before, state), (after, _) = spooled
    assert state == "stalled" and before.header.frames >= 10
    assert after.header.start_us - before.header.end_us >= 3 * 1_000_000  # the gap, between two segments
    assert recorder.segments_failed == 0
    assert not list((tmp_path / "cam0").glob(f"*{JOURNAL_SUFFIX}")), "a spooled segment's journal is dropped"


def test_a_camera_stopped_while_stalled_is_stopped_in_its_health(fake):
    async def run() -> Camera:
        cam = Camera(CameraConfig(id="cam0", source="picamera2:0", width=320, height=240, fps=10, motion=False))
        cam.start(asyncio.get_running_loop())
        await wait_for(lambda: cam.stats.frames_encoded >= 3, 5, "frames")
        fake.stall(0)
        await wait_for(lambda: cam.health().state == "stalled", 3, "stall")
        await cam.stop()
        return cam

    cam = asyncio.run(run())
    assert (cam.state, cam.health().state, cam.health().stalls) == ("stopped", "stopped", 1)
