"""A Pi camera that misbehaves (issue 20), against tests/fakes/picamera2: stalls, failed starts, busy and
missing cameras, sizes libcamera adjusted, the sensor's own capture time, and a rate that drops."""

from __future__ import annotations

import asyncio
import time

import av
import pytest

import node.capture.master as master
import node.sources.picamera2 as pisource
from node.capture.master import Camera
from node.capture.timebase import TimeBase
from node.sources import open_source
from node.sources.base import SourceError
from shared.config import CameraConfig


def camera(number: int = 0, fps: int = 10, cam_id: str = "cam0", width: int = 320, height: int = 240) -> CameraConfig:
    return CameraConfig(id=cam_id, source=f"picamera2:{number}", width=width, height=height, fps=fps, motion=False)


async def wait_for(predicate, within: float, what: str) -> float:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < within, f"no {what} within {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def test_a_stalled_camera_is_reopened_the_gap_is_an_event_and_the_other_camera_records_on(fake):
    stalls: list[tuple] = []

    async def run() -> tuple[Camera, Camera, list[int], float]:
        loop = asyncio.get_running_loop()
        a, b = Camera(camera(0, cam_id="cam0")), Camera(camera(1, cam_id="cam1"))
        for cam in (a, b):
            cam.on_stall = lambda *args: stalls.append(args)
            cam.start(loop)
        await wait_for(lambda: a.stats.frames_encoded >= 5, 5, "frames")
        fake.stall(0, 2.0)
        counts = []
        await wait_for(lambda: a.health().state == "stalled", 3, "stall")
        assert a.health().error and "delivered no frame" in a.health().error
        for _ in range(4):  # while cam0 is stalled, cam1 records at its rate
            before = b.stats.frames_encoded
            await asyncio.sleep(0.5)
            counts.append(b.stats.frames_encoded - before)
        await wait_for(lambda: a.health().state == "up", 10, "recovery")
        frames_after = a.stats.frames_encoded
        await wait_for(lambda: a.stats.frames_encoded >= frames_after + 3, 3, "frames after recovery")
        t0 = time.monotonic()
        await asyncio.gather(a.stop(), b.stop())
        return a, b, counts, time.monotonic() - t0

    a, b, counts, stop_s = asyncio.run(run())
    assert all(n >= 3 for n in counts) and 15 <= sum(counts) <= 25, counts  # ~5 per 0.5 s
    assert b.health().stalls == 0 and b.stats.frames_dropped == 0
    assert a.health().stalls == 1 and stop_s < 2.0
    assert [(s[0], s[2] is None) for s in stalls] == [("cam0", True), ("cam0", False)]
    (_, start, _, why), (_, start2, end, _) = stalls
    assert start == start2 and 2.0 <= (end - start) / 1e6 < 10 and "delivered no frame" in why


def test_stop_returns_at_once_while_a_read_waits_on_a_stalled_camera(fake, monkeypatch):
    monkeypatch.setattr(pisource, "MIN_STALL_S", 60.0)  # the read would wait a minute

    async def run() -> float:
        cam = Camera(camera(0))
        cam.start(asyncio.get_running_loop())
        await wait_for(lambda: cam.stats.frames_encoded >= 3, 5, "frames")
        fake.stall(0)
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        await cam.stop()
        assert cam.state == "stopped"
        return time.monotonic() - t0

    assert asyncio.run(run()) < 1.0
    assert 0 not in pisource._open, "the stalled camera was closed and its number given back"


@pytest.mark.parametrize("step", ["configure", "start"])
def test_a_failed_configure_or_start_gives_the_camera_back(fake, step):
    fake.fail(0, step, RuntimeError(f"{step} went wrong"))
    with pytest.raises(SourceError, match=f"camera cam0: Picamera2 camera 0 did not start: RuntimeError: {step}"):
        open_source(camera(0))
    open_source(camera(0)).close()  # not left held by the Picamera2 object that failed


def test_an_encoder_that_fails_to_open_closes_the_opened_source(fake, monkeypatch):
    def broken(*_: object, **__: object) -> None:
        raise av.FFmpegError(1, "no encoder")

    monkeypatch.setattr(master, "open_encoder", broken)

    async def run() -> None:
        with pytest.raises(av.FFmpegError):
            Camera(camera(0)).start(asyncio.get_running_loop())

    asyncio.run(run())
    open_source(camera(0)).close()


def test_busy_and_missing_say_which_camera_why_and_what_to_do(fake, monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_BUSY", "1")
    with pytest.raises(SourceError) as busy:
        open_source(camera(1, cam_id="door"))
    assert ("camera door: Picamera2 camera 1 is busy (Failed to acquire camera: Device or resource busy): "
            "another process holds it; stop it") in str(busy.value)
    with pytest.raises(SourceError, match=r"camera gate: no Picamera2 camera 2 \(cameras found: 0: ov5647, "
                                          r"1: imx708\); check its ribbon cable"):
        open_source(camera(2, cam_id="gate"))


@pytest.mark.parametrize(("board", "strides"), [("pi5", {"main": 384, "lores": 384}),  # 128-byte rows
                                                 ("pi4", {"main": 320, "lores": 320})])  # 64-byte rows
def test_sizes_and_strides_libcamera_configured_are_what_is_used(fake, monkeypatch, board, strides):
    monkeypatch.setenv("FAKE_PICAMERA2_BOARD", board)
    fake.adjust(0, "main", (304, 240))

    async def run() -> tuple[Camera, list[av.VideoFrame]]:
        cam = Camera(camera(0))
        sub = cam.subscribe("t", 100)
        cam.start(asyncio.get_running_loop())
        await wait_for(lambda: cam.stats.frames_encoded >= 3, 5, "frames")
        await cam.stop()
        codec = av.CodecContext.create("h264", "r")
        out: list[av.VideoFrame] = []
        while (unit := await sub.get()) is not None:
            out += codec.decode(av.Packet(unit.data))
        return cam, out

    source = open_source(camera(0))
    try:
        assert (source.width, source.height) == (304, 240)  # type: ignore[union-attr]
        assert source.strides == strides  # type: ignore[union-attr]
        frame = source.read(0)
        assert (frame.width, frame.height) == (304, 240)
    finally:
        source.close()
    cam, frames = asyncio.run(run())
    assert (cam.health().width, cam.health().height) == (304, 240)
    assert frames and {(f.width, f.height) for f in frames} == {(304, 240)}


def test_capture_time_is_when_the_sensor_read_the_frame(fake):
    source = open_source(camera(0))
    try:
        source.read(0)
        ages = []
        for i in range(1, 4):
            source.read(i)
            ages.append(source.age_us)  # type: ignore[union-attr]
    finally:
        source.close()
    assert all(25_000 <= age < 80_000 for age in ages), ages  # the fake's 30 ms from readout to completion
    clock = {"mono": 10_000_000, "wall": 1_700_000_000_000_000}
    base = TimeBase(lambda: clock["wall"], lambda: clock["mono"])
    assert base.stamp(age_us=30_000) == 1_700_000_000_000_000 - 30_000


def test_encode_slower_than_a_frame_halves_the_rate_and_says_so(fake, monkeypatch):
    real = master.open_encoder

    class Slow:
        def __init__(self, encoder) -> None:
            self.inner, self.name = encoder, encoder.name

        def encode(self, frame, capture_us):
            time.sleep(0.13)  # more than one 100 ms frame
            return self.inner.encode(frame, capture_us)

        def flush(self):
            return self.inner.flush()

    monkeypatch.setattr(master, "open_encoder", lambda *a, **k: Slow(real(*a, **k)))

    async def run() -> Camera:
        cam = Camera(camera(0, fps=10))
        cam.start(asyncio.get_running_loop())
        await wait_for(lambda: cam.stats.frames_encoded >= 2, 5, "frames")
        await asyncio.sleep(3.0)
        health = cam.health()
        await cam.stop()
        assert health.fps is not None and 3.2 <= health.fps <= 5.5, health.fps  # 10 fps became 5 (1/3 if slow)
        assert health.frames_dropped is not None and health.frames_encoded is not None
        assert health.frames_dropped >= health.frames_encoded - 3  # every other frame, counted
        return cam

    asyncio.run(run())


def test_a_vanished_camera_says_so_and_the_other_is_reopened_by_its_id_though_renumbered(fake):
    stalls: list[tuple] = []

    async def run() -> tuple[Camera, Camera]:
        loop = asyncio.get_running_loop()
        a, b = Camera(camera(0, cam_id="cam0")), Camera(camera(1, cam_id="cam1"))
        for cam in (a, b):
            cam.on_stall = lambda *args: stalls.append(args)
            cam.start(loop)
        await wait_for(lambda: a.stats.frames_encoded >= 3 and b.stats.frames_encoded >= 3, 5, "frames")
        fake.vanish(0, 6.0)  # camera 0 gone: camera 1 is Picamera2(0) now
        fake.stall(1, 0.5)
        await wait_for(lambda: a.health().state == "stalled" and b.health().state == "stalled", 3, "stalls")
        await wait_for(lambda: b.health().state == "up", 5, "cam1 reopened")
        assert a.health().state == "stalled"  # still gone
        await wait_for(lambda: "no Picamera2 camera 0" in (a.health().error or ""), 5, "cam0 said missing")
        await asyncio.gather(a.stop(), b.stop())
        return a, b

    a, b = asyncio.run(run())
    assert a.health().stalls == 1 and b.health().stalls == 1
    cam0 = [s for s in stalls if s[0] == "cam0"]
    assert [s[2] is None for s in cam0] == [True] * (len(cam0) - 1) + [False]  # open, updated, closed at the stop
    assert "check its ribbon cable" in cam0[-2][3]
    assert "no Picamera2 camera 0" in cam0[-1][3]  # closed with the latest reason, not the first
