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
from shared.protocol.health import CameraHealth
from tests.system.conftest import free_port, get_json, processes, wait_for_health  # noqa: F401  (fixture)

FAKES = Path(__file__).parents[1] / "fakes"


@pytest.fixture
def fake_picamera2(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("FAKE_PICAMERA2_STARTUP_S", "0.05")  # these tests count frames from the start
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    assert picamera2.__version__.endswith("-fake")
    yield picamera2
    sys.modules.pop("picamera2", None)


def camera(number: int = 0, width: int = 360, height: int = 240, fps: int = 20, cam_id: str = "cam0",
           substream: tuple[int, int] | None = None) -> CameraConfig:
    # 360 wide: Picamera2 pads rows to a 384-byte stride, which must never reach the picture.
    return CameraConfig(id=cam_id, source=f"picamera2:{number}", width=width, height=height, fps=fps, motion=False,
                        substream=substream)


def test_configuration_follows_the_seed(fake_picamera2):
    source = open_source(camera())
    try:
        cfg = source._cam.camera_config  # type: ignore[union-attr]
        assert cfg["main"]["format"] == "YUV420" and cfg["main"]["size"] == (360, 240)
        assert cfg["lores"]["format"] == "YUV420" and cfg["lores"]["size"] == (360, 240)  # ~320 wide: step 1
        assert (cfg["buffer_count"], cfg["queue"], cfg["encode"]) == (4, False, "main")
        assert cfg["controls"]["FrameRate"] == 20.0
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
        # (each with the sensor's frame number: a read that comes late, on a loaded machine, gets a later one)
        frames = [(source.read(i), source._cam._last + 1) for i in range(3)]  # type: ignore[union-attr]
        assert source._cam._outstanding == 0  # type: ignore[union-attr]  # every request released
    finally:
        source.close()
    for frame, n in frames:
        assert (frame.format.name, frame.width, frame.height) == ("yuv420p", 360, 240)
        expected = fake_picamera2.frame_array(360, 240, n)
        raw = frame.to_ndarray()
        assert np.array_equal(raw[:240], expected[:240, :360])
        assert (raw[240:300] == 100).all() and (raw[300:] == 150).all()
        assert 0xEE not in raw


def test_frames_come_at_the_camera_rate(fake_picamera2):
    source = open_source(camera(fps=20))
    try:
        source.read(0)  # type: ignore[union-attr]  # after the sensor's start-up delay
        t0 = time.monotonic()
        for i in range(1, 11):
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
    from node.capture.master import Camera

    async def run() -> list[av.VideoFrame]:
        cam = Camera(camera(fps=10))
        sub = cam.subscribe("t", 100)
        cam.start(asyncio.get_running_loop())
        await asyncio.sleep(1.0)
        health = cam.health()
        await cam.stop()
        assert health.state == "up" and health.encoder == "libx264"  # no hardware encoder here
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
                           "--substream", "160x120", "--camera", "cam0=picamera2:0", "--camera", "cam1=picamera2:1")
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
    assert all(c["substream_frames"]["from_source"] >= 10 and c["substream_frames"]["scaled"] == 0
               for c in cams.values()), "each sub stream is its camera's ISP lores"


def test_with_a_sub_stream_lores_is_the_sub_picture(fake_picamera2):
    source = open_source(camera(width=1280, height=720, substream=(640, 360)))
    try:
        cfg = source._cam.camera_config  # type: ignore[union-attr]
        assert (cfg["lores"]["format"], cfg["lores"]["size"]) == ("YUV420", (640, 360))  # the ISP scales it
        assert (cfg["main"]["format"], cfg["main"]["size"]) == ("YUV420", (1280, 720))
        frames = [(source.read(i), source.sub_frame, source._cam._last + 1)  # type: ignore[union-attr]
                  for i in range(3)]
        assert source._cam._outstanding == 0  # type: ignore[union-attr]
    finally:
        source.close()
    for main, small, n in frames:
        assert (main.width, main.height) == (1280, 720)
        assert small is not None and (small.format.name, small.width, small.height) == ("yuv420p", 640, 360)
        expected = fake_picamera2.frame_array(640, 360, n)  # what make_array("lores") returned, stride padding off
        raw = small.to_ndarray()
        assert np.array_equal(raw[:360], expected[:360, :640]) and 0xEE not in raw
    assert frames[0][1] is not frames[1][1], "a fresh picture per frame: the encoder may still hold the last"


def test_the_sub_encoder_takes_the_isp_lores_not_a_scaled_main(fake_picamera2):
    from node.capture.master import Camera

    async def run() -> tuple[CameraHealth, list[av.VideoFrame]]:
        cam = Camera(camera(fps=10, width=640, height=360, substream=(320, 180)))
        cam.start(asyncio.get_running_loop())
        assert cam.sub_fanout is not None
        sub = cam.sub_fanout.subscribe("t", 100)
        await asyncio.sleep(1.0)
        health = cam.health()
        await cam.stop()
        codec = av.CodecContext.create("h264", "r")
        out: list[av.VideoFrame] = []
        while (unit := await sub.get()) is not None:
            out += codec.decode(av.Packet(unit.data))
        return health, out

    health, frames = asyncio.run(run())
    assert health.substream == "320x180" and health.substream_frames is not None
    assert health.substream_frames.scaled == 0 and (health.substream_frames.from_source or 0) >= 7
    assert len(frames) >= 7 and {(f.width, f.height) for f in frames} == {(320, 180)}
    y = frames[-1].to_ndarray()[:180, :320].astype(int)
    assert abs(y[:, 315].mean() - 213) < 8 and abs(y[:, 3].mean() - 18) < 8  # the lores gradient survived encoding


def test_a_source_without_its_own_small_picture_is_scaled_and_masks_reach_the_lores_one():
    from node.capture.encoders import open_encoder
    from node.capture.substream import SubStream

    units: list = []
    filtered: list[int] = []  # masks/timestamp: only on the source's picture, main was filtered before scaling
    small = SubStream(open_encoder(CameraConfig(id="c", source="synthetic", width=160, height=90, fps=10)),
                      160, 90, units.append, lambda frame, capture_us: filtered.append(capture_us))
    big = av.VideoFrame(320, 180, "yuv420p")
    small.encode(big, 1)
    small.encode(big, 2, av.VideoFrame(200, 100, "yuv420p"))  # the wrong size: scaled from main instead
    small.encode(big, 3, av.VideoFrame(160, 90, "yuv420p"))
    assert (small.scaled, small.from_source) == (2, 1) and filtered == [3]
