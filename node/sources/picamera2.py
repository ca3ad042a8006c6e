"""Raspberry Pi camera modules through Picamera2 (``picamera2`` or ``picamera2:N``).

Imported only when a camera's source asks for it, so nodes elsewhere never
need ``picamera2`` (``pip install '.[pi]'`` on a Pi, or Raspberry Pi OS's
``python3-picamera2``). One node process (its CameraMaster) owns every camera
of the Pi: each ``Picamera2(N)`` is opened once, and a config naming the same
camera twice is refused here rather than by libcamera's "Device or resource busy".

Per camera, one video configuration with two streams from the ISP:
``main`` in YUV420 at the configured size (what is encoded, the encoder's own
input format: no conversion) and ``lores`` in YUV420, scaled by the ISP for
free. Without a sub stream, lores is at the luma motion detector's working
size (~320 wide). With one (``substream``), lores is at the sub stream's size
and ``sub_frame`` hands it to the sub encoder (node/capture/thread.py ``SubStream``)
instead of libswscale scaling main on the capture thread; the motion luma
(``lores``) is then every n-th pixel of it, back at ~320 wide. Picamera2 has
one lores stream, and it must be YUV and no larger than main (its
``check_camera_config``), which a configured ``substream`` always is. Four buffers
and ``queue=False``, as the seed sets it: ``capture_request`` then waits for a
fresh frame rather than handing out one that sat in the queue, so the capture
time taken right after it is true, and 4 x 3 MB at 1080p stays affordable.

Encoding is not Picamera2's business here: the node's encoder probe
(node/capture/encoders.py) finds ``h264_v4l2m2m`` (the bcm2835 codec at /dev/video11,
the same block Picamera2's own ``H264Encoder`` drives) on a Pi 4, and nothing on
a Pi 5, which has no video encoder: there it falls back to libx264, which is
also what Picamera2's ``H264Encoder`` is on a Pi 5 (``LibavH264Encoder``).
"""

from __future__ import annotations

import threading
from typing import Any

import av
import numpy as np

from node.sources import register_source
from node.sources.base import FrameSource, SourceError, plane_view
from shared.config import CameraConfig

BUFFER_COUNT = 4  # the seed's buffer_count
QUEUE = False  # the seed's queue=False: always a fresh frame
LORES_WIDTH = 320  # node/motion/luma.py works on ~320 columns

_open: dict[int, str] = {}  # camera number -> camera id, for the whole process
_open_lock = threading.Lock()


def _even(n: int) -> int:
    return max(2, n - n % 2)


def lores_size(width: int, height: int) -> tuple[int, int]:
    """The lores stream's size: ~320 wide, the main stream's aspect, even (YUV420)."""
    step = max(1, round(width / LORES_WIDTH))
    return _even(-(-width // step)), _even(-(-height // step))


def yuv420_planes(array: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V views of Picamera2's YUV420 array: shape (height * 3 / 2, stride), rows padded to the stride.

    The chroma planes are height/2 rows of stride/2 bytes each, packed behind Y; as rows of the
    array they do not line up, so they are cut from the flat buffer.
    """
    stride = array.shape[1]
    flat = array.reshape(-1)
    y_size, c_size = height * stride, (height // 2) * (stride // 2)
    y = flat[:y_size].reshape(height, stride)[:, :width]
    u = flat[y_size : y_size + c_size].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[y_size + c_size : y_size + 2 * c_size].reshape(height // 2, stride // 2)[:, : width // 2]
    return y, u, v


def cameras_found() -> list[dict[str, Any]]:
    """Picamera2's list of attached cameras, or [] when picamera2 is not importable."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        return []
    try:
        return list(Picamera2.global_camera_info())
    except Exception:  # noqa: BLE001 - a probe: libcamera trouble means "none found"
        return []


class Picamera2Source(FrameSource):
    """A ``FrameSource``: ``read`` waits for the camera's next frame and returns its main stream as yuv420p."""

    def __init__(self, camera: CameraConfig, number: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(f"camera {camera.id}: picamera2 is not installed (pip install '.[pi]' on a "
                              f"Raspberry Pi, or apt install python3-picamera2): {exc}") from exc
        self.id, self.number = camera.id, number
        self.width, self.height = camera.width, camera.height
        self.fps: float = camera.fps
        # The ISP's second output: the sub stream's size when there is one (see the module docstring).
        self.sub_size = camera.substream
        self.lores_size = camera.substream or lores_size(camera.width, camera.height)
        self._luma_step = max(1, round(self.lores_size[0] / LORES_WIDTH))
        self.lores: np.ndarray | None = None  # the latest lores luma (~320 wide), for a motion detector that wants it
        self.sub_frame: av.VideoFrame | None = None  # the latest lores picture as yuv420p, with a sub stream
        found = cameras_found()
        if number >= len(found):
            names = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(found)) or "none"
            raise SourceError(f"camera {camera.id}: no Picamera2 camera {number} (cameras found: {names})")
        with _open_lock:
            if number in _open:
                raise SourceError(f"camera {camera.id}: Picamera2 camera {number} is already used by {_open[number]}")
            _open[number] = camera.id
        try:
            self._cam = Picamera2(number)
            config = self._cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                lores={"size": self.lores_size, "format": "YUV420"},
                buffer_count=BUFFER_COUNT, queue=QUEUE, encode="main",
                controls={"FrameRate": float(self.fps)},
            )
            self._cam.configure(config)
            self._cam.start()
        except Exception as exc:
            self._release_number()
            raise SourceError(f"camera {camera.id}: Picamera2 camera {number} did not start: {exc}") from exc

    def read(self, frame_index: int) -> av.VideoFrame:
        request = self._cam.capture_request()
        try:
            main = request.make_array("main")
            lores = request.make_array("lores")
        finally:
            request.release()  # back to libcamera at once: with 4 buffers a held one stalls the camera
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for index, plane in enumerate(yuv420_planes(main, self.width, self.height)):
            plane_view(frame, index)[:] = plane
        planes = yuv420_planes(lores, *self.lores_size)
        if self.sub_size is not None:
            small = av.VideoFrame(*self.sub_size, "yuv420p")  # a fresh frame each time: the encoder may hold it
            for index, plane in enumerate(planes):
                plane_view(small, index)[:] = plane
            self.sub_frame = small
        self.lores = planes[0][:: self._luma_step, :: self._luma_step]
        return frame

    def close(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        finally:
            self._release_number()

    def _release_number(self) -> None:
        with _open_lock:
            _open.pop(self.number, None)


def open_picamera2(camera: CameraConfig, arg: str) -> Picamera2Source:
    try:
        number = int(arg) if arg else 0
    except ValueError:
        raise SourceError(f"camera {camera.id}: source picamera2:{arg} must be picamera2:N, N the camera "
                          "number (0 or 1 on a Pi 5)") from None
    return Picamera2Source(camera, number)


register_source("picamera2", open_picamera2, "'picamera2[:N]'")
