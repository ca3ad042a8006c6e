"""Contract tests of the Picamera2 source against tests/fakes/picamera2 (the real node code path runs)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from node.sources import open_source
from node.sources.base import SourceError
from shared.config import CameraConfig
from tests.system.conftest import free_port, get_json, processes, wait_for_health  # noqa: F401  (fixture)

FAKES = Path(__file__).parents[1] / "fakes"


@pytest.fixture
def fake_picamera2(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    assert picamera2.__version__.endswith("-fake")
    yield picamera2
    sys.modules.pop("picamera2", None)


def camera(number: int = 0, width: int = 360, height: int = 240, fps: int = 20, cam_id: str = "cam0") -> CameraConfig:
    # 360 wide: Picamera2 pads rows to a 384-byte stride, which must never reach the picture.
    return CameraConfig(id=cam_id, source=f"picamera2:{number}", width=width, height=height, fps=fps, motion=False)


def test_configuration_follows_the_seed(fake_picamera2):
    source = open_source(camera())
    try:
        cfg = source._cam.camera_config  # type: ignore[union-attr]
        assert cfg["main"] == {"format": "YUV420", "size": (360, 240)}
        assert cfg["lores"] == {"format": "YUV420", "size": (360, 240)}  # already ~320 wide: step 1
        assert (cfg["buffer_count"], cfg["queue"], cfg["encode"]) == (4, False, "main")
        assert cfg["controls"] == {"FrameRate": 20.0}
        assert source._cam.started  # type: ignore[union-attr]
    finally:
        source.close()
    big = open_source(camera(width=1920, height=1080))
    try:
        assert big._cam.camera_config["lores"]["size"] == (320, 180)  # type: ignore[union-attr]
    finally:
        big.close()


def test_frames_are_the_main_stream_without_padding(fake_picamera2):
    source = open_source(camera())
    try:
        frames = [source.read(i) for i in range(3)]  # type: ignore[union-attr]
        assert source._cam._outstanding == 0  # type: ignore[union-attr]  # every request released
    finally:
        source.close()
    for n, frame in enumerate(frames, start=1):
        assert (frame.format.name, frame.width, frame.height) == ("yuv420p", 360, 240)
        expected = fake_picamera2.frame_array(360, 240, n)
        raw = frame.to_ndarray()
        assert np.array_equal(raw[:240], expected[:240, :360])
        assert (raw[240:300] == 100).all() and (raw[300:] == 150).all()
        assert 0xEE not in raw
    assert source.lores is not None and source.lores.shape == (240, 360)  # type: ignore[union-attr]


def test_frames_come_at_the_camera_rate(fake_picamera2):
    source = open_source(camera(fps=20))
    try:
        t0 = time.monotonic()
        for i in range(10):
            source.read(i)  # type: ignore[union-attr]
        assert time.monotonic() - t0 == pytest.approx(0.5, abs=0.1)
    finally:
        source.close()


def test_one_process_owns_both_cameras(fake_picamera2):
    a = open_source(camera(0, cam_id="cam0"))
    b = open_source(camera(1, cam_id="cam1"))
    try:
        with pytest.raises(SourceError, match="already used by cam0"):
            open_source(camera(0, cam_id="cam2"))
        with pytest.raises(SourceError, match=r"no Picamera2 camera 2 \(cameras found: 0: ov5647, 1: imx708\)"):
            open_source(camera(2, cam_id="cam3"))
    finally:
        a.close()
        b.close()
    open_source(camera(0)).close()  # closed cameras can be opened again


def test_bad_configuration_is_a_source_error(fake_picamera2):
    with pytest.raises(SourceError, match="must be picamera2:N"):
        open_source(CameraConfig(id="c", source="picamera2:front"))


def test_without_picamera2_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match=r"pip install '\.\[pi\]'"):
        open_source(camera())


def test_camera_encodes_the_picamera2_frames(fake_picamera2):
    from node.master import Camera

    async def run() -> list[av.VideoFrame]:
        cam = Camera(camera(fps=10))
        sub = cam.subscribe("t", 100)
        cam.start(asyncio.get_running_loop())
        await asyncio.sleep(1.0)
        health = cam.health()
        await cam.stop()
        assert health["state"] == "up" and health["encoder"] == "libx264"  # no hardware encoder here
        codec = av.CodecContext.create("h264", "r")
        out: list[av.VideoFrame] = []
        while (unit := await sub.get()) is not None:
            out += codec.decode(av.Packet(unit.data))
        return out

    frames = asyncio.run(run())
    assert len(frames) >= 7
    y = frames[-1].to_ndarray()[:240, :360].astype(int)
    assert abs(y[:, 350].mean() - 211) < 6 and abs(y[:, 5].mean() - 19) < 6  # the gradient survived encoding


def test_a_node_process_runs_two_picamera2_cameras(processes, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PYTHONPATH", f"{FAKES}:{Path(__file__).parents[2]}")
    port = free_port()
    proc = processes.start("node", "node", "--id", "pi0", "--host", "127.0.0.1", "--port", str(port), "--no-auth",
                           "--spool", str(tmp_path / "spool"), "--size", "320x240", "--fps", "10",
                           "--camera", "cam0=picamera2:0", "--camera", "cam1=picamera2:1")
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    deadline = time.monotonic() + 10
    while True:
        cams = get_json(url + "/health")["cameras"]
        if all(c["frames_encoded"] >= 10 for c in cams.values()):
            break
        assert time.monotonic() < deadline, cams
        time.sleep(0.2)
    assert {c["state"] for c in cams.values()} == {"up"}
