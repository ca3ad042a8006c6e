"""What the fake Picamera2 models below the Python API: boards, sensor modes, buffer layouts, faults.

Boards (``FAKE_PICAMERA2_BOARD``): ``pi5`` (the default; PiSP back end, ``pispbe``) or ``pi4`` (VC4,
``bcm2835-isp``). They differ where the node can see it:

- YUV420 strides. VC4 (libcamera ``src/libcamera/pipeline/rpi/vc4/vc4.cpp``): a luma row is the width
  rounded up to 64 bytes, a chroma row half that. PiSP (``src/libcamera/pipeline/rpi/pisp/pisp.cpp``): a
  chroma row is the chroma width rounded up to 64 bytes and a luma row twice that, so luma rows are
  multiples of 128 bytes. (A PiSP output that is downscaled a lot can be wider still; not modelled.)
- ``lores must be YUV`` is checked on VC4 only (picamera2 ``check_camera_config``).

Sensor modes (``MODES``) and their fastest frame rate come from the modules' published modes; the mode is
picked the way picamera2's ``_make_libcamera_config`` scores them, and a frame duration shorter than the
mode's is raised to it, as libcamera does (imx708 at full resolution gives ~14 fps, whatever is asked).

Faults, per camera number, for tests in this process (``stall``, ``vanish``, ``fail``, ``adjust``) or for a
node process through the environment:

- ``FAKE_PICAMERA2_STALL="N:AFTER:FOR[,...]"``: camera N's frames stop AFTER seconds after it first starts,
  for FOR seconds; a camera running then never delivers again (close and reopen it), one opened after the
  window works;
- ``FAKE_PICAMERA2_BUSY="N[:FOR][,...]"``: camera N is held by another process (for FOR seconds from this
  process's start, else for good);
- ``FAKE_PICAMERA2_STARTUP_S``: seconds from ``start()`` to the first frame (default 0.2).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

MODELS = ("ov5647", "imx708")
# (size, fastest fps) per sensor mode, as `rpicam-hello --list-cameras` lists them
MODES: dict[str, tuple[tuple[tuple[int, int], float], ...]] = {
    "ov5647": (((640, 480), 58.92), ((1296, 972), 46.34), ((1920, 1080), 32.81), ((2592, 1944), 15.63)),
    "imx708": (((1536, 864), 120.13), ((2304, 1296), 56.03), ((4608, 2592), 14.35)),
}
ISP = {"pi5": "pispbe", "pi4": "bcm2835-isp"}


def board() -> str:
    name = os.environ.get("FAKE_PICAMERA2_BOARD", "pi5")
    if name not in ISP:
        raise ValueError(f"FAKE_PICAMERA2_BOARD must be one of {sorted(ISP)}, not {name!r}")
    return name


def yuv420_stride(width: int, board_name: str | None = None) -> int:
    """Bytes per luma row of a YUV420 buffer on this board (the chroma rows are half)."""
    if (board_name or board()) == "pi4":
        return -(-width // 64) * 64
    chroma = -(-(width // 2) // 64) * 64
    return 2 * chroma


def pick_mode(model: str, size: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """The sensor mode picamera2 would pick for an output size (its ``score_mode``, bit depth aside)."""

    def score_format(desired: float, actual: float) -> float:
        score = desired - actual
        return -score / 4 if score < 0 else score * 2

    def score(mode: tuple[tuple[int, int], float]) -> float:
        (w, h), _ = mode
        return (score_format(size[0], w) + score_format(size[1], h)
                + 1500 * score_format(size[0] / size[1], w / h))

    return min(MODES[model], key=score)


@dataclass
class Faults:
    """Per camera number: stall windows (monotonic start, end), vanished windows, failures to inject."""

    stalls: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    vanished: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    fail: dict[tuple[int, str], BaseException] = field(default_factory=dict)  # (camera, "configure"|"start")
    adjust: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)  # (camera, stream) -> size
    pending: dict[int, tuple[float, float]] = field(default_factory=dict)  # from the env: (after, for) at start
    started: set[int] = field(default_factory=set)

    @classmethod
    def from_env(cls) -> Faults:
        faults = cls()
        for item in filter(None, os.environ.get("FAKE_PICAMERA2_STALL", "").split(",")):
            num, after, length = item.split(":")
            faults.pending[int(num)] = (float(after), float(length))
        return faults

    def on_start(self, num: int) -> None:
        if num in self.pending and num not in self.started:
            after, length = self.pending.pop(num)
            start = time.monotonic() + after
            self.stalls.setdefault(num, []).append((start, start + length))
        self.started.add(num)

    def dead_from(self, num: int, session_start: float) -> float | None:
        """When a session started at ``session_start`` stops for good: the first stall not over before it."""
        ends = [s for s, e in self.stalls.get(num, []) + self.vanished.get(num, []) if e > session_start]
        return min(ends) if ends else None

    def present(self, num: int, now: float) -> bool:
        return not any(s <= now < e for s, e in self.vanished.get(num, []))


_STARTED = time.monotonic()  # this process's start, near enough: FAKE_PICAMERA2_BUSY's FOR counts from it


def busy_elsewhere() -> set[int]:
    """The camera numbers another process holds now."""
    busy, now = set(), time.monotonic() - _STARTED
    for item in filter(None, os.environ.get("FAKE_PICAMERA2_BUSY", "").split(",")):
        num, _, length = item.partition(":")
        if not length or now < float(length):
            busy.add(int(num))
    return busy


def startup_s() -> float:
    return float(os.environ.get("FAKE_PICAMERA2_STARTUP_S", "0.2"))
