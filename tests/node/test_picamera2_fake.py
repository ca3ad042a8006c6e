"""The Picamera2 fake acts as the real library does (picamera2/picamera2.py, picamera2/job.py; libcamera's
vc4 and pisp pipelines) where the node depends on it: docs/cameras.md, "What differs on a real Pi 5"."""

from __future__ import annotations

import concurrent.futures
import gc
import sys
import threading
import time
from pathlib import Path

import pytest

FAKES = Path(__file__).parents[1] / "fakes"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("FAKE_PICAMERA2_STARTUP_S", "0.2")
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        monkeypatch.delitem(sys.modules, name)
    import picamera2

    yield picamera2
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        sys.modules.pop(name, None)


def started(fake, num: int = 0, size: tuple[int, int] = (640, 480), fps: float = 20.0, queue: bool = False,
            lores: tuple[int, int] | None = None):
    cam = fake.Picamera2(num)
    config = cam.create_video_configuration(main={"size": size, "format": "YUV420"},
                                            lores={"size": lores, "format": "YUV420"} if lores else None,
                                            buffer_count=4, queue=queue, controls={"FrameRate": fps})
    cam.configure(config)
    cam.start()
    return cam


def test_a_stalled_camera_blocks_without_wait_and_times_out_with_it(fake):
    cam = started(fake)
    try:
        cam.capture_request(wait=2.0).release()
        fake.stall(0, 1.5)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):  # concurrent.futures.TimeoutError: the builtin since Python 3.11
            cam.capture_request(wait=0.3)
        assert 0.25 < time.monotonic() - t0 < 1.0
        result: list[BaseException | object] = []
        blocked = threading.Thread(target=lambda: result.append(_call(cam.capture_request)), daemon=True)
        blocked.start()
        blocked.join(0.5)
        assert blocked.is_alive(), "capture_request() with no wait blocks for good on a stalled camera"
        cam.cancel_all_and_flush()  # the real cancel: a blocked job raises CancelledError
        blocked.join(2.0)
        assert not blocked.is_alive() and isinstance(result[0], concurrent.futures.CancelledError)
    finally:
        cam.close()
    time.sleep(max(0.0, t0 + 1.6 - time.monotonic()))
    again = started(fake)  # closed and reopened after the stall's window: frames again
    try:
        again.capture_request(wait=2.0).release()
    finally:
        again.close()


def _call(function):
    try:
        return function()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test
        return exc


def test_a_timed_out_job_stays_queued_and_takes_the_next_frame_until_flushed(fake):
    cam = started(fake, fps=20)
    try:
        cam.capture_request(wait=2.0).release()
        with pytest.raises(TimeoutError):
            cam.capture_request(wait=0.001)
        first = cam.capture_request(wait=2.0)
        assert cam._outstanding == 2  # the stale job holds the frame it took
        first.release()
        with pytest.raises(TimeoutError):
            cam.capture_request(wait=0.001)
        cam.cancel_all_and_flush()
        cam.capture_request(wait=2.0).release()
        assert cam._outstanding == 1
    finally:
        cam.close()


def test_frames_come_on_the_sensor_beat_so_a_late_caller_waits_for_the_next(fake):
    cam = started(fake, fps=20)
    try:
        cam.capture_request(wait=2.0).release()
        t0 = time.monotonic()
        stamps = []
        for _ in range(8):
            request = cam.capture_request(wait=2.0)
            stamps.append(request.get_metadata()["SensorTimestamp"])
            request.release()
            time.sleep(0.06)  # more than one 50 ms frame of work
        elapsed = time.monotonic() - t0
    finally:
        cam.close()
    gaps = [round((b - a) / 50e6) for a, b in zip(stamps, stamps[1:], strict=False)]
    # every other frame: 20 fps became 10 (a sleep that overran 40 ms on a loaded machine misses one more)
    assert all(g >= 2 for g in gaps) and gaps.count(2) >= len(gaps) - 2, gaps
    assert 0.7 <= elapsed <= 1.1


def test_start_up_delay_and_the_sensor_mode_fps_limit(fake):
    t0 = time.monotonic()
    cam = started(fake, num=1, size=(4608, 2592), fps=30)  # imx708 full resolution: ~14 fps at most
    try:
        first = cam.capture_request(wait=3.0)
        assert time.monotonic() - t0 >= 0.2  # the start-up delay
        a = first.get_metadata()
        first.release()
        b = cam.capture_request(wait=3.0)
        assert cam.camera_config["sensor"]["output_size"] == (4608, 2592)
        assert (b.get_metadata()["SensorTimestamp"] - a["SensorTimestamp"]) / 1e9 == pytest.approx(1 / 14.35,
                                                                                                   rel=0.05)
        assert b.get_metadata()["FrameDuration"] == pytest.approx(1e6 / 14.35, rel=0.01)
        b.release()
    finally:
        cam.close()


def test_configuration_dicts_as_the_real_library_makes_them(fake):
    cam = fake.Picamera2(0)
    try:
        config = cam.create_video_configuration(main={"size": (641, 481), "format": "YUV420"},
                                                controls={"FrameRate": 15.0})
        assert config["main"]["size"] == (640, 480)  # align_stream(optimal=False): even
        assert config["controls"]["FrameDurationLimits"] == (33333, 33333) and config["controls"]["FrameRate"] == 15
        assert config["lores"] is None and config["raw"] is not None and config["queue"] is True
        cam.configure(config)
        main = cam.camera_config["main"]
        assert (main["size"], main["stride"], main["framesize"]) == ((640, 480), 640, 640 * 480 * 3 // 2)
    finally:
        cam.close()


@pytest.mark.parametrize(("board", "width", "stride"), [("pi5", 360, 384), ("pi5", 1000, 1024),
                                                        ("pi5", 1920, 1920), ("pi5", 2000, 2048),
                                                        ("pi4", 1000, 1024), ("pi4", 1090, 1152),
                                                        ("pi5", 1090, 1152), ("pi5", 1300, 1408),
                                                        ("pi4", 1300, 1344)])
def test_yuv420_strides_by_board(fake, monkeypatch, board, width, stride):
    monkeypatch.setenv("FAKE_PICAMERA2_BOARD", board)
    cam = started(fake, size=(width, 240))
    try:
        assert cam.camera_config["main"]["stride"] == stride
        request = cam.capture_request(wait=2.0)
        assert request.make_array("main").shape == (360, stride)
        request.release()
    finally:
        cam.close()


def test_lores_must_be_yuv_only_on_a_pi4(fake, monkeypatch):
    for board, ok in (("pi5", True), ("pi4", False)):
        monkeypatch.setenv("FAKE_PICAMERA2_BOARD", board)
        cam = fake.Picamera2(0)
        try:
            config = cam.create_video_configuration(main={"size": (640, 480)},
                                                    lores={"size": (320, 240), "format": "XBGR8888"})
            if ok:
                cam.configure(config)
            else:
                with pytest.raises(RuntimeError, match="lores stream must be YUV"):
                    cam.configure(config)
        finally:
            cam.close()


def test_busy_keeps_its_cause_and_an_unclosed_camera_stays_held(fake, monkeypatch):
    cam = fake.Picamera2(0)
    fake.fail(0, "configure", RuntimeError("Configuration failed"))
    with pytest.raises(RuntimeError):
        cam.configure(cam.create_video_configuration())
    del cam
    gc.collect()  # atexit still holds it: the camera is not given back
    with pytest.raises(RuntimeError, match="Camera __init__ sequence did not complete") as busy:
        fake.Picamera2(0)
    cause = busy.value.__cause__ or busy.value.__context__
    assert cause is not None and "Device or resource busy" in str(cause)
    monkeypatch.setenv("FAKE_PICAMERA2_BUSY", "1")
    with pytest.raises(RuntimeError) as elsewhere:
        fake.Picamera2(1)
    assert "Device or resource busy" in str(elsewhere.value.__context__)
    with pytest.raises(IndexError):
        fake.Picamera2(2)


def test_a_vanished_camera_is_gone_from_the_list_and_the_others_renumber(fake):
    cam = started(fake, num=1)
    try:
        cam.capture_request(wait=2.0).release()
        fake.vanish(0, 0.5)
        assert [c["Num"] for c in fake.Picamera2.global_camera_info()] == [1]
        time.sleep(0.6)
        assert [c["Num"] for c in fake.Picamera2.global_camera_info()] == [0, 1]
    finally:
        cam.close()
        fake.reset()


def test_adjusted_sizes_are_written_back_by_configure(fake):
    fake.adjust(0, "lores", (320, 176))
    cam = started(fake, lores=(320, 180))
    try:
        lores = cam.camera_config["lores"]
        assert (lores["size"], lores["stride"]) == ((320, 176), 384)
        request = cam.capture_request(wait=2.0)
        assert request.make_array("lores").shape == (264, 384)
        request.release()
    finally:
        cam.close()
        fake.reset()
