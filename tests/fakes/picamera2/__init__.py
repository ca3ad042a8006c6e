"""A fake of the part of Picamera2's API the node uses, acting as the real library does where it matters.

Only on ``sys.path`` when a test puts it there (tests/fakes), so the node's real code path
(node/sources/picamera2.py) runs against it in CI. Compared call by call with picamera2's
``picamera2/picamera2.py`` and ``picamera2/job.py`` (0.3.17 to 0.3.38):

- ``Picamera2(n)``: ``n`` indexes ``global_camera_info()`` (an absent camera: ``IndexError``, outside the
  init's ``try``, as the real one); a camera already held (here or by another process) fails as
  ``RuntimeError("Camera __init__ sequence did not complete.")`` raised inside the ``except``, so the cause
  ("Failed to acquire camera: Device or resource busy") is its ``__context__`` (the real code has no
  ``from``). An object that is never closed keeps its camera (``atexit.register(self.close)``).
- ``create_video_configuration``: real dicts (even sizes, ``preserve_ar``, a raw stream,
  ``NoiseReductionMode`` and ``FrameDurationLimits`` (33333, 33333) under the caller's controls).
- ``configure``: checks what ``check_camera_config`` checks (lores must be YUV on a Pi 4 only), then writes
  back each stream's ``size``, ``stride`` and ``framesize`` as libcamera validated them (``adjust`` makes it
  change a size, as libcamera may), and the sensor mode it picked.
- ``capture_request(wait=None)`` blocks until a frame, with no limit; ``wait=SECONDS`` raises
  ``concurrent.futures.TimeoutError`` (the builtin ``TimeoutError`` since Python 3.11) and, as the real job
  list does, leaves the job queued: it takes the next frame unless ``cancel_all_and_flush()`` cancels it
  (a call blocked meanwhile gets ``CancelledError``).
- Frames come on the sensor's fixed beat, from ``start()`` plus a start-up delay; with ``queue=False`` a
  caller that comes late waits for the next frame (so the rate drops to a whole fraction), and a frame
  duration is never shorter than the sensor mode allows. ``SensorTimestamp`` (CLOCK_MONOTONIC ns, as
  picamera2's own ``flush`` compares it with ``time.monotonic_ns()``) is ``FRAME_LATENCY_S`` before the
  request completes.

Frames: a YUV420 array of shape (height * 3 / 2, stride) with the board's stride (tests/fakes/picamera2/
sensor.py), a gradient with a bright square moving one pixel per frame. Test controls: ``stall``,
``vanish``, ``fail``, ``adjust``, ``reset`` (and the environment variables in sensor.py for a node process).
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from . import sensor
from .sensor import MODELS, board, busy_elsewhere, pick_mode, yuv420_stride

__version__ = "0.3.38-fake"
FRAME_LATENCY_S = 0.03  # start of readout to the request's completion (readout + ISP)
_log = logging.getLogger("picamera2.picamera2")
_busy: set[int] = set()
_lock = threading.Lock()
_faults = sensor.Faults.from_env()


def cameras() -> int:
    return int(sensor.os.environ.get("FAKE_PICAMERA2_CAMERAS", "2"))


def stride_of(width: int) -> int:
    return yuv420_stride(width)


# ---- test controls ------------------------------------------------------------------------------------------

def stall(num: int, seconds: float = math.inf) -> None:
    """Camera ``num`` delivers no more frames from now: a running camera for good, one opened within
    ``seconds`` too; one opened after that works (a loose cable pushed back, a sensor that came back)."""
    now = time.monotonic()
    _faults.stalls.setdefault(num, []).append((now, now + seconds))


def vanish(num: int, seconds: float = math.inf) -> None:
    """Camera ``num`` stalls and is gone from ``global_camera_info()`` for ``seconds`` (the others renumber)."""
    now = time.monotonic()
    _faults.vanished.setdefault(num, []).append((now, now + seconds))


def fail(num: int, step: str, error: BaseException) -> None:
    """Camera ``num``'s next ``configure`` or ``start`` (``step``) raises ``error``."""
    _faults.fail[(num, step)] = error


def adjust(num: int, stream: str, size: tuple[int, int]) -> None:
    """libcamera adjusts camera ``num``'s ``stream`` to ``size`` at every configure."""
    _faults.adjust[(num, stream)] = size


def reset() -> None:
    global _faults
    _faults = sensor.Faults.from_env()


# ---- the API ------------------------------------------------------------------------------------------------

def frame_array(width: int, height: int, n: int, stride: int | None = None) -> np.ndarray:
    """What make_array returns for a YUV420 stream: Y then U then V, rows padded to the stride."""
    stride = stride or stride_of(width)
    flat = np.full(stride * height * 3 // 2, 0xEE, dtype=np.uint8)  # padding that must never be shown
    y = flat[: stride * height].reshape(height, stride)
    y[:, :width] = (np.arange(width, dtype=np.uint32) * 200 // max(1, width - 1) + 16).astype(np.uint8)
    size = max(4, height // 8)
    x0 = n % max(1, width - size)
    y[height // 4 : height // 4 + size, x0 : x0 + size] = 235
    c = (height // 2) * (stride // 2)
    u = flat[stride * height : stride * height + c].reshape(height // 2, stride // 2)
    v = flat[stride * height + c :].reshape(height // 2, stride // 2)
    u[:, : width // 2] = 100
    v[:, : width // 2] = 150
    return flat.reshape(height * 3 // 2, stride)


class CompletedRequest:
    def __init__(self, camera: Picamera2, n: int, at: float) -> None:
        self._camera, self.n, self.at, self.released = camera, n, at, False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        stream = self._camera._stream(name)
        return frame_array(*stream["size"], self.n, stream["stride"])

    def get_metadata(self) -> dict[str, Any]:
        duration_us = round(self._camera._duration * 1e6)
        return {"SensorTimestamp": int((self.at - FRAME_LATENCY_S) * 1e9), "FrameDuration": duration_us,
                "ExposureTime": duration_us // 2}

    def release(self) -> None:
        if not self.released:
            self.released = True
            with self._camera._cond:
                self._camera._outstanding -= 1
                self._camera._cond.notify_all()


def _present() -> list[int]:
    now = time.monotonic()
    return [i for i in range(cameras()) if _faults.present(i, now)]


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        self.is_open = False
        num = self.global_camera_info()[camera_num]["Num"]  # an absent camera: IndexError, as the real one
        self.camera_idx = num
        try:
            self._acquire(num)
            self.is_open = True
        except Exception:
            _log.error("Camera __init__ sequence did not complete.")
            raise RuntimeError("Camera __init__ sequence did not complete.")  # noqa: B904 - as the real code
        atexit.register(self.close)  # keeps an unclosed camera (and its hold on the device) alive
        self.camera_properties = {"Model": MODELS[num % 2], "PixelArraySize": (2592, 1944),
                                  "ColorFilterArrangement": 0}
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self._duration = 1 / 30
        self._outstanding = 0
        self._t0 = 0.0
        self._session = 0.0
        self._last = -1  # the last frame index handed out
        self._stale = 0  # timed-out jobs still queued: each takes a frame
        self._generation = 0  # bumped by cancel_all_and_flush: blocked calls raise CancelledError
        self._cond = threading.Condition()
        self._max_queue_len = 0

    @staticmethod
    def _acquire(num: int) -> None:
        with _lock:
            if num in _busy or num in busy_elsewhere():
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            _busy.add(num)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": MODELS[i % 2], "Location": 2, "Rotation": 0, "Num": i,
                 "Id": f"/base/axi/pcie@120000/rp1/i2c@{88000 + i * 4000}/{MODELS[i % 2]}@1a"}
                for i in _present()]

    def create_video_configuration(self, main: dict | None = None, lores: dict | None = None,
                                   raw: dict | None = None, transform: Any = None, colour_space: Any = None,
                                   buffer_count: int = 6, controls: dict | None = None, display: str | None = "main",
                                   encode: str | None = "main", queue: bool = True, sensor: dict | None = None,
                                   use_case: str = "video") -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")

        def stream(initial: dict, updates: dict | None) -> dict | None:
            if updates is None:
                return None
            out = {**initial, **updates}
            w, h = out["size"]
            out["size"] = (w - w % 2, h - h % 2)  # align_stream(optimal=False)
            return out

        main_cfg = stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main or {})
        assert main_cfg is not None
        lores_cfg = stream({"format": "YUV420", "size": main_cfg["size"], "preserve_ar": False}, lores)
        raw_cfg = {"format": "SBGGR10_CSI2P", "size": main_cfg["size"], **(raw or {})}
        if colour_space is None:
            small = main_cfg["size"][0] < 1280 or main_cfg["size"][1] < 720
            colour_space = "Smpte170m" if small else "Rec709"
        config = {"use_case": use_case, "transform": transform or "Transform()", "colour_space": colour_space,
                  "buffer_count": buffer_count, "queue": queue, "main": main_cfg, "lores": lores_cfg,
                  "raw": raw_cfg, "controls": {"NoiseReductionMode": "Fast", "FrameDurationLimits": (33333, 33333),
                                               **(controls or {})},
                  "sensor": dict(sensor or {}), "display": display, "encode": encode}
        for name in (display, encode):
            if name is not None and config.get(name) is None:
                raise RuntimeError(f"Stream {name} was not defined")
        return config

    @staticmethod
    def _check_stream(stream: dict, name: str) -> None:
        if stream["format"] not in ("YUV420", "YVU420", "XBGR8888", "XRGB8888", "RGB888", "BGR888"):
            raise RuntimeError(f"Bad format {stream['format']} in stream {name}")
        if stream["size"][0] % 2 or stream["size"][1] % 2:
            raise RuntimeError("width and height should be even")

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config)  # shallow, as configure_ copies: the stream dicts are updated in place
        self.camera_config = None
        self._check_stream(config["main"], "main")
        lores = config["lores"]
        if lores is not None:
            self._check_stream(lores, "lores")
            if lores["size"][0] > config["main"]["size"][0] or lores["size"][1] > config["main"]["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if board() == "pi4" and lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
        if config["buffer_count"] < 1:
            raise RuntimeError("buffer_count must be at least 1")
        adjusted = False
        for name in ("main", "lores"):
            stream = config[name]
            if stream is None:
                continue
            size = _faults.adjust.get((self.camera_idx, name), stream["size"])
            adjusted |= size != tuple(stream["size"])
            width, height = stream["size"] = tuple(size)
            bpp = 1 if stream["format"] in ("YUV420", "YVU420") else 4
            stream["stride"] = yuv420_stride(width) if bpp == 1 else -(-width * 4 // 64) * 64
            stream["framesize"] = stream["stride"] * height * 3 // 2 if bpp == 1 else stream["stride"] * height
        if adjusted:
            _log.info("Camera configuration has been adjusted!")
        error = _faults.fail.pop((self.camera_idx, "configure"), None)
        if error is not None:
            raise error
        mode, mode_fps = pick_mode(self.camera_properties["Model"], config["main"]["size"])
        config["sensor"] = {"bit_depth": 10, "output_size": mode}
        controls = config["controls"]
        limits = controls["FrameDurationLimits"]
        asked = 1 / float(controls["FrameRate"]) if "FrameRate" in controls else limits[0] / 1e6
        self._duration = max(asked, 1 / mode_fps)
        self._max_queue_len = 1 if config["queue"] and config["buffer_count"] > 1 else 0
        self.camera_config = config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        return self._stream(name)

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        error = _faults.fail.pop((self.camera_idx, "start"), None)
        if error is not None:
            raise error
        now = time.monotonic()
        _faults.on_start(self.camera_idx)
        self._session, self._t0, self._last, self._stale = now, now + sensor.startup_s(), -1, 0
        self.started = True

    def _stream(self, name: str) -> dict[str, Any]:
        stream = (self.camera_config or {}).get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not configured")
        return stream

    def _next_frame(self, now: float) -> int:
        """The frame a job queued now gets: with ``queue=True`` the latest completed one if not yet handed out,
        otherwise the first one to complete from now on (``queue=False``: a late caller waits a beat)."""
        latest = math.floor((now - self._t0) / self._duration) if now >= self._t0 else -1
        if self._max_queue_len and latest > self._last:
            return latest
        return max(self._last + 1, latest + 1)

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> CompletedRequest:
        if wait is False or signal_function is not None:
            raise NotImplementedError("the fake Picamera2 has no asynchronous jobs")
        timeout = None if wait is None or wait is True else float(wait)  # (1.0 == True: not "in")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            generation = self._generation
            k = self._next_frame(time.monotonic()) + self._stale  # timed-out jobs still queued take frames first
            while True:
                if self._generation != generation:
                    raise CancelledError()
                now = time.monotonic()
                assert self.camera_config is not None or not self.started
                free = self.started and self._outstanding + self._stale < self.camera_config["buffer_count"]  # type: ignore[index]
                if not free:  # no buffer queued to libcamera: frames are lost until one comes back
                    k = max(k, self._next_frame(now) + self._stale)
                at = self._t0 + k * self._duration
                dead = _faults.dead_from(self.camera_idx, self._session)
                arrives = free and (dead is None or at < dead)
                if arrives and at <= now:
                    self._outstanding += 1 + self._stale  # a stale job's request is never released
                    self._stale, self._last = 0, k
                    return CompletedRequest(self, k + 1, at)
                until = at if arrives else math.inf
                if deadline is not None and deadline < until:
                    if deadline <= now:
                        self._stale += 1  # the job stays in the list, as the real one does
                        raise FutureTimeout()
                    until = deadline
                self._cond.wait(None if until == math.inf else min(until - now, 0.5))

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        request = self.capture_request(wait=wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def cancel_all_and_flush(self) -> None:
        with self._cond:
            self._generation += 1
            self._stale = 0
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.started = False
            self._cond.notify_all()

    def close(self) -> None:
        atexit.unregister(self.close)
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        self.camera_config = None
        with _lock:
            _busy.discard(self.camera_idx)
