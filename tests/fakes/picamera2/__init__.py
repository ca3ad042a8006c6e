"""A fake of the part of Picamera2's API the node uses, faithful in the ways that matter to it.

Only on ``sys.path`` when a test puts it there (tests/fakes), so the node's real
code path (node/sources/picamera2.py) runs against it in CI. Mirrors:
``Picamera2(camera_num)`` (refuses a camera that is absent or already open, as
libcamera does), ``global_camera_info()``, ``create_video_configuration(main=,
lores=, buffer_count=, queue=, encode=, controls=)`` (checks what a Pi's ISP
checks: YUV420 lores no larger than main), ``configure``, ``start``,
``capture_request()`` → a request with ``make_array(name)`` and ``release()``
(at most ``buffer_count`` outstanding, like the real buffer pool),
``capture_array(name)``, ``stop``, ``close``.

Frames: a YUV420 array of shape (height * 3 / 2, stride), the stride padded to
64 bytes, as Picamera2 returns it; content is a gradient with a bright square
moving one pixel per frame, so tests can check what reached the encoder. Frames
come at the configured ``FrameRate``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

__version__ = "0.3.99-fake"
_busy: set[int] = set()
_lock = threading.Lock()
MODELS = ("ov5647", "imx708")


def cameras() -> int:
    return int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "2"))


def stride_of(width: int) -> int:
    return -(-width // 64) * 64


def frame_array(width: int, height: int, n: int) -> np.ndarray:
    """What make_array returns for a YUV420 stream: Y then U then V, rows padded to the stride."""
    stride = stride_of(width)
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
    def __init__(self, camera: Picamera2, n: int) -> None:
        self._camera, self.n, self.released = camera, n, False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        width, height = self._camera._stream_size(name)
        return frame_array(width, height, self.n)

    def get_metadata(self) -> dict[str, Any]:
        return {"SensorTimestamp": time.monotonic_ns(), "FrameDuration": int(1e6 / self._camera._fps)}

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._camera._outstanding -= 1


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= cameras():
            raise IndexError("list index out of range")
        with _lock:
            if camera_num in _busy:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            _busy.add(camera_num)
        self.camera_num = camera_num
        self.camera_properties = {"Model": MODELS[camera_num % 2], "PixelArraySize": (2592, 1944)}
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self._fps = 30.0
        self._n = 0
        self._outstanding = 0
        self._next = 0.0

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": MODELS[i % 2], "Location": 2, "Rotation": 0, "Num": i,
                 "Id": f"/base/axi/pcie@120000/rp1/i2c@{88000 + i * 4000}/{MODELS[i % 2]}@36"}
                for i in range(cameras())]

    def create_video_configuration(self, main: dict | None = None, lores: dict | None = None, raw: dict | None = None,
                                   transform: Any = None, colour_space: Any = None, buffer_count: int = 6,
                                   controls: dict | None = None, display: str | None = "main",
                                   encode: str | None = "main", queue: bool = True, sensor: dict | None = None,
                                   use_case: str = "video") -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        if main["format"] not in ("YUV420", "YVU420", "XBGR8888", "XRGB8888", "RGB888", "BGR888"):
            raise RuntimeError(f"Format {main['format']} not supported")
        if lores is not None:
            lores = {"format": "YUV420", "size": (640, 480), **lores}
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        if buffer_count < 1:
            raise RuntimeError("buffer_count must be at least 1")
        return {"use_case": use_case, "main": main, "lores": lores, "raw": raw, "buffer_count": buffer_count,
                "queue": queue, "encode": encode, "display": display, "controls": dict(controls or {})}

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = camera_config
        self._fps = float(camera_config["controls"].get("FrameRate", 30.0))

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self._next = time.monotonic()

    def _stream_size(self, name: str) -> tuple[int, int]:
        assert self.camera_config is not None
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not configured")
        return stream["size"]

    def capture_request(self, wait: Any = None, flush: Any = None) -> CompletedRequest:
        if not self.started:
            raise RuntimeError("Camera is not running")
        assert self.camera_config is not None
        if self._outstanding >= self.camera_config["buffer_count"]:
            raise RuntimeError("all buffers are held by the application: release your requests")
        # With queue=False a request is always a frame that completes after the call.
        self._next = max(self._next + 1 / self._fps, time.monotonic() if not self.camera_config["queue"] else 0)
        time.sleep(max(0.0, self._next - time.monotonic()))
        self._n += 1
        self._outstanding += 1
        return CompletedRequest(self, self._n)

    def capture_array(self, name: str = "main") -> np.ndarray:
        request = self.capture_request()
        try:
            return request.make_array(name)
        finally:
            request.release()

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.stop()
        if not self.closed:
            self.closed = True
            with _lock:
                _busy.discard(self.camera_num)
