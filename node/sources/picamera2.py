"""Raspberry Pi camera modules through Picamera2 (``picamera2`` or ``picamera2:N``).

Imported only when a camera's source asks for it, so nodes elsewhere never
need ``picamera2`` (``pip install '.[pi]'`` on a Pi, or Raspberry Pi OS's
``python3-picamera2``). One node process (its CameraMaster) owns every camera
of the Pi: each ``Picamera2(N)`` is opened once, and a config naming the same
camera twice is refused here rather than by libcamera's "Device or resource busy".

Per camera, one video configuration with two streams from the ISP:
``main`` in YUV420 at the configured size (what is encoded, the encoder's own
input format: no conversion) and ``lores`` in YUV420, scaled by the ISP for
free. Without a sub stream, lores is ~320 wide and not read (nothing asks for
it yet). With one (``substream``), lores is at the sub stream's size
and ``sub_frame`` hands it to the sub encoder (node/capture/thread.py ``SubStream``)
instead of libswscale scaling main on the capture thread. Picamera2 has
one lores stream, and it must be YUV and no larger than main (its
``check_camera_config``), which a configured ``substream`` always is. Four buffers
and ``queue=False``, as the seed sets it: ``capture_request`` then waits for the
sensor's next frame rather than handing out one that sat in the queue (4 x 3 MB
at 1080p stays affordable). A frame's capture time is its ``SensorTimestamp``.
libcamera may adjust a stream's size: what ``configure`` wrote back is used.

A camera that stops (a loose ribbon cable, a sensor dropout) would block
``capture_request()`` for good: it is called with ``wait=`` a few frame intervals,
then ``cancel_all_and_flush()`` and ``close()``, and ``SourceStalled`` tells the
capture thread to report the stall and ``reopen`` with backoff. Every failure
between ``Picamera2(N)`` and ``start()`` closes it again; a camera missing, busy or failing to start
raises ``SourceUnavailable`` saying which, why and what to do: at node start too, the camera is then
``stalled`` and opened again with the same backoff (node/capture/opener.py), the node's other cameras
record on (docs/cameras.md).

Encoding is not Picamera2's business here: the node's encoder probe
(node/capture/encoders.py) finds ``h264_v4l2m2m`` (the bcm2835 codec at /dev/video11,
the same block Picamera2's own ``H264Encoder`` drives) on a Pi 4, and nothing on
a Pi 5, which has no video encoder: there it falls back to libx264, which is
also what Picamera2's ``H264Encoder`` is on a Pi 5 (``LibavH264Encoder``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import av
import numpy as np

from node.sources import register_source
from node.sources.base import FrameSource, SourceError, SourceStalled, SourceUnavailable, plane_view
from shared.config import CameraConfig

BUFFER_COUNT = 4  # the seed's buffer_count
QUEUE = False  # the seed's queue=False: always a fresh frame
LORES_WIDTH = 320  # node/motion/luma.py works on ~320 columns
# A frame not come within this many frame intervals (and at least MIN_STALL_S) is a stall; the first after
# start gets FIRST_FRAME_S (the sensor's start-up, a few frames of AGC). Real capture_request() without
# wait= blocks for good (picamera2.py: dispatch_functions -> Job.get_result(timeout=None)).
STALL_FRAMES = 5
MIN_STALL_S = 1.0
FIRST_FRAME_S = 5.0
MAX_AGE_US = 5_000_000  # a SensorTimestamp further back than this is not on our clock
log = logging.getLogger(__name__)

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
    """A ``FrameSource``: ``read`` waits for the camera's next frame and returns its main stream as yuv420p.

    Paced by the sensor (``paced``): ``capture_request`` waits for the next frame on the sensor's beat, so
    the capture thread does not pace it again; ``skipped`` counts the frames the sensor made since the last
    ``read`` that nobody took (per-frame work longer than a frame interval), from ``SensorTimestamp``.
    """

    paced = True

    def __init__(self, camera: CameraConfig, number: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(f"camera {camera.id}: picamera2 is not installed (pip install '.[pi]' on a "
                              f"Raspberry Pi, or apt install python3-picamera2): {exc}") from exc
        self._picamera2 = Picamera2
        self.id, self.number = camera.id, number
        self.asked = (camera.width, camera.height)
        self.width, self.height = camera.width, camera.height
        self.fps: float = camera.fps
        # The ISP's second output: the sub stream's size when there is one (see the module docstring).
        self.sub_size = camera.substream
        self.asked_lores = camera.substream or lores_size(camera.width, camera.height)
        self.lores_size = self.asked_lores
        self.sub_frame: av.VideoFrame | None = None  # the latest lores picture as yuv420p, with a sub stream
        self.strides: dict[str, int] = {}  # per stream, as libcamera configured it
        self.skipped = 0  # frames the sensor made before the one ``read`` just returned that nobody took
        self.age_us = 0  # how long before ``read`` returned the sensor read the frame (``SensorTimestamp``)
        self.sensor_id: str | None = None  # libcamera's Id: a reopen finds the camera even if others renumbered
        self._cam: Any = None
        self._fresh = True
        self._last_ns: int | None = None
        with _open_lock:
            if number in _open:
                raise SourceError(f"camera {camera.id}: Picamera2 camera {number} is already used by {_open[number]}")
            _open[number] = camera.id
        try:
            self._start()
        except BaseException:
            self._release_number()
            raise

    def _index(self) -> int:
        """Where the camera is in Picamera2's list now: by its Id once known (a camera that vanished and came
        back, or another one gone, renumbers them), else the configured number."""
        found = cameras_found()
        if self.sensor_id is not None:
            for index, info in enumerate(found):
                if info.get("Id") == self.sensor_id:
                    return index
        elif self.number < len(found):
            self.sensor_id = str(found[self.number].get("Id") or "") or None
            return self.number
        names = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(found)) or "none"
        raise SourceUnavailable(f"camera {self.id}: no Picamera2 camera {self.number} (cameras found: {names}); "
                                "check its ribbon cable and that libcamera sees it (rpicam-hello --list-cameras)")

    def _start(self) -> None:
        """Open, configure and start the camera; anything opened is closed again if a later step fails."""
        index = self._index()
        try:
            cam = self._picamera2(index)
        except IndexError:  # gone between the listing and the open
            raise SourceUnavailable(f"camera {self.id}: no Picamera2 camera {self.number} any more; check its "
                                    "ribbon cable (rpicam-hello --list-cameras)") from None
        except Exception as exc:
            raise SourceUnavailable(self._open_failed(exc)) from exc
        try:
            config = cam.create_video_configuration(
                main={"size": self.asked, "format": "YUV420"},
                lores={"size": self.asked_lores, "format": "YUV420"},
                buffer_count=BUFFER_COUNT, queue=QUEUE, encode="main",
                controls={"FrameRate": float(self.fps)},
            )
            cam.configure(config)
            self._read_back(cam.camera_config)
            cam.start()
        except Exception as exc:
            _close_quietly(cam, self.id)
            raise SourceUnavailable(f"camera {self.id}: Picamera2 camera {self.number} did not start: "
                                    f"{type(exc).__name__}: {exc}") from exc
        self._cam, self._fresh, self._last_ns = cam, True, None

    def _open_failed(self, exc: BaseException) -> str:
        """Picamera2 hides why its init failed ("Camera __init__ sequence did not complete."): the cause is
        the exception it was raised over (its ``__context__``; ``__cause__`` should it ever say ``from``)."""
        cause = exc.__cause__ or exc.__context__
        why = f"{cause}" if cause is not None else f"{type(exc).__name__}: {exc}"
        if "busy" in why.lower():
            return (f"camera {self.id}: Picamera2 camera {self.number} is busy ({why}): another process holds it; "
                    "stop it (another sht node, rpicam-apps, motion; sudo fuser -v /dev/media* /dev/video* "
                    "names it); the node opens it again once it is free")
        return (f"camera {self.id}: Picamera2 camera {self.number} did not open ({why}); check the cable and "
                "rpicam-hello --list-cameras")

    def _read_back(self, config: dict[str, Any]) -> None:
        """The sizes and strides libcamera configured (it may adjust what was asked, saying so at INFO only)."""
        main, lores = config["main"], config["lores"]
        width, height = (int(v) for v in main["size"])
        if (width, height) != self.asked:
            log.warning("camera %s: libcamera gave the main stream %dx%d, not the %dx%d asked; recording that",
                        self.id, width, height, *self.asked)
        lw, lh = (int(v) for v in lores["size"])
        if (lw, lh) != self.asked_lores:
            log.warning("camera %s: libcamera gave the lores stream %dx%d, not the %dx%d asked", self.id, lw, lh,
                        *self.asked_lores)
        self.width, self.height, self.lores_size = width, height, (lw, lh)
        self.strides = {name: int(stream["stride"]) for name, stream in (("main", main), ("lores", lores))
                        if stream.get("stride")}

    def read(self, frame_index: int) -> av.VideoFrame:
        cam = self._cam
        if cam is None:
            raise SourceStalled(f"camera {self.id}: Picamera2 camera {self.number} is closed")
        timeout = FIRST_FRAME_S if self._fresh else max(MIN_STALL_S, STALL_FRAMES / self.fps)
        try:
            request = cam.capture_request(wait=timeout)
        except (FutureTimeout, TimeoutError, CancelledError) as exc:
            self._abandon()
            what = ("was cancelled" if isinstance(exc, CancelledError)
                    else f"delivered no frame in {timeout:.1f} s (a loose ribbon cable or a sensor dropout?)")
            raise SourceStalled(f"camera {self.id}: Picamera2 camera {self.number} {what}") from None
        self._fresh = False
        try:
            metadata = request.get_metadata()
            main = request.make_array("main")
            lores = request.make_array("lores") if self.sub_size is not None else None
        finally:
            request.release()  # back to libcamera at once: with 4 buffers a held one stalls the camera
        self._timing(metadata)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for index, plane in enumerate(yuv420_planes(main, self.width, self.height)):
            plane_view(frame, index)[:] = plane
        if lores is not None:
            planes = yuv420_planes(lores, *self.lores_size)
            small = av.VideoFrame(*self.lores_size, "yuv420p")  # fresh each time: the encoder may hold it
            for index, plane in enumerate(planes):
                plane_view(small, index)[:] = plane
            self.sub_frame = small  # a lores size libcamera changed is scaled from main instead (SubStream)
        return frame

    def _timing(self, metadata: dict[str, Any]) -> None:
        """``age_us`` and ``skipped`` from the request's ``SensorTimestamp`` (CLOCK_MONOTONIC ns) and
        ``FrameDuration`` (us): the capture time is when the sensor read the frame, not when it arrived."""
        sensor_ns, duration_us = metadata.get("SensorTimestamp"), metadata.get("FrameDuration")
        self.skipped, self.age_us = 0, 0
        if not isinstance(sensor_ns, int):
            return
        if self._last_ns is not None and isinstance(duration_us, int) and duration_us > 0:
            self.skipped = max(0, round((sensor_ns - self._last_ns) / (duration_us * 1000)) - 1)
        self._last_ns = sensor_ns
        age = (time.monotonic_ns() - sensor_ns) // 1000
        if 0 <= age <= MAX_AGE_US:  # else not CLOCK_MONOTONIC after all: the arrival time stands
            self.age_us = age

    def reopen(self) -> None:
        """Open the camera again after a stall (``SourceError`` if it cannot be, yet)."""
        self._abandon()
        self._start()

    def abort(self) -> None:
        """From another thread: make a ``read`` waiting for a frame give up now (``Camera.stop``)."""
        cam = self._cam
        if cam is not None:
            try:
                cam.cancel_all_and_flush()
            except Exception as exc:  # noqa: BLE001 - stopping anyway
                log.warning("camera %s: cancel_all_and_flush failed: %s", self.id, exc)

    def _abandon(self) -> None:
        """Cancel what waits for a frame and close the camera, so that it can be opened again."""
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.cancel_all_and_flush()
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.warning("camera %s: cancel_all_and_flush failed: %s", self.id, exc)
            _close_quietly(cam, self.id)

    def close(self) -> None:
        try:
            self._abandon()
        finally:
            self._release_number()

    def _release_number(self) -> None:
        with _open_lock:
            _open.pop(self.number, None)


def _close_quietly(cam: Any, camera_id: str) -> None:
    try:
        cam.close()  # stops it first; gives the camera back (else its atexit hook keeps it held)
    except Exception as exc:  # noqa: BLE001 - a close that fails must not hide why we closed
        log.warning("camera %s: Picamera2 close failed: %s", camera_id, exc)


def open_picamera2(camera: CameraConfig, arg: str) -> Picamera2Source:
    try:
        number = int(arg) if arg else 0
    except ValueError:
        raise SourceError(f"camera {camera.id}: source picamera2:{arg} must be picamera2:N, N the camera "
                          "number (0 or 1 on a Pi 5)") from None
    return Picamera2Source(camera, number)


register_source("picamera2", open_picamera2, "'picamera2[:N]'")
