"""A Pi camera missing, busy or failing at node start (issue 20 review), against tests/fakes/picamera2: the
camera is `stalled` saying which camera, why and what to do, reported as a stall, and opened again with
backoff; the node's other camera records from the start. A config error still stops the camera's start."""

from __future__ import annotations

import asyncio
import time

import pytest

import node.capture.opener as opener
import node.sources.picamera2 as pisource
from node.capture.master import Camera
from node.sources.base import SourceError, SourceUnavailable
from shared.config import CameraConfig
from tests.node.test_picamera2_stall import camera, wait_for


@pytest.fixture
def quick_reopen(monkeypatch):
    monkeypatch.setattr(opener, "REOPEN_FIRST_S", 0.2)
    monkeypatch.setattr(opener, "REOPEN_MAX_S", 0.4)


def test_a_camera_busy_then_missing_at_start_is_stalled_then_opened_and_the_other_records_from_the_start(
        fake, quick_reopen, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FAKE_PICAMERA2_BUSY", "1")
    stalls: list[tuple] = []

    async def run() -> tuple[Camera, Camera, int]:
        loop = asyncio.get_running_loop()
        a, b = Camera(camera(0, cam_id="cam0")), Camera(camera(1, cam_id="cam1"))
        for cam in (a, b):
            cam.on_stall = lambda *args: stalls.append(args)
            cam.start(loop)  # cam1 busy: no raise
        health = b.health()
        assert (health.state, health.stalls) == ("stalled", 1)
        assert health.error is not None and "camera cam1: Picamera2 camera 1 is busy" in health.error
        await wait_for(lambda: a.stats.frames_encoded >= 5, 5, "cam0 frames")
        assert b.health().state == "stalled" and b.stats.frames_encoded == 0
        fake.vanish(1, 1.0)  # the other process let go, and the cable is loose for a second
        monkeypatch.delenv("FAKE_PICAMERA2_BUSY")
        await wait_for(lambda: "no Picamera2 camera 1" in (b.health().error or ""), 3, "cam1 said missing")
        await wait_for(lambda: b.stats.frames_encoded >= 3, 5, "cam1 frames once it is back")
        assert (b.health().state, b.health().error, b.health().stalls) == ("up", None, 1)
        before = a.stats.frames_encoded
        await asyncio.gather(a.stop(), b.stop())
        return a, b, before

    a, b, cam0_frames = asyncio.run(run())
    assert cam0_frames >= 15 and a.health().stalls == 0  # cam0 at its 10 fps throughout
    assert [s[0] for s in stalls] == ["cam1"] * len(stalls)
    assert [s[2] is None for s in stalls] == [True, True, False]  # open (busy), updated (missing), closed
    assert "is busy" in stalls[0][3] and "stop it" in stalls[0][3]
    assert "no Picamera2 camera 1" in stalls[1][3] and "check its ribbon cable" in stalls[1][3]
    assert "no Picamera2 camera 1" in stalls[2][3]  # closed with the latest reason
    assert stalls[2][1] == stalls[0][1] and 1.0 <= (stalls[2][2] - stalls[2][1]) / 1e6 <= 6.0
    assert 1 not in pisource._open and b.state == "stopped"


def test_stop_while_a_camera_is_still_unavailable_ends_its_stall(fake, quick_reopen, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FAKE_PICAMERA2_BUSY", "0")
    stalls: list[tuple] = []

    async def run() -> tuple[Camera, float]:
        cam = Camera(camera(0))
        cam.on_stall = lambda *args: stalls.append(args)
        cam.start(asyncio.get_running_loop())
        await asyncio.sleep(0.8)  # a few tries
        t0 = time.monotonic()
        await cam.stop()
        return cam, time.monotonic() - t0

    cam, took = asyncio.run(run())
    assert took < 1.0 and cam.state == "stopped"
    assert [s[2] is None for s in stalls] == [True, False]
    assert stalls[-1][3].endswith("(until the stop)") and "is busy" in stalls[-1][3]


def test_a_config_error_still_stops_the_start(fake):  # noqa: F811
    async def run() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(SourceError, match="must be picamera2:N") as bad:
            Camera(CameraConfig(id="cam0", source="picamera2:first", width=320, height=240, fps=10,
                                motion=False)).start(loop)
        assert not isinstance(bad.value, SourceUnavailable)
        with pytest.raises(SourceError, match="unknown source"):
            Camera(CameraConfig(id="cam0", source="nonsense:x", width=320, height=240, fps=10,
                                motion=False)).start(loop)

    asyncio.run(run())
