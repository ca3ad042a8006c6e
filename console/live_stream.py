"""Live video for the console: which frames to decode, and decoding them.

The console shows 1–2 frames a second per camera, so it decodes **keyframes only**:
each one carries SPS and PPS in-band (docs/protocol.md), so a fresh H.264 decoder
turns it into a picture with no earlier frame. Everything else is skipped unread.
PyAV is imported when the first decoder is made, so the console starts without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.protocol.live import LiveFrame

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_FPS = 2.0
MAX_WIDTH = 640  # pictures are scaled down to at most this many pixels across before they reach the UI


class KeyframeThrottle:
    """Admits keyframes, at most ``max_fps`` a second."""

    def __init__(self, max_fps: float = MAX_FPS, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = 1.0 / max_fps
        self.clock = clock
        self._last: float | None = None

    def admit(self, frame: LiveFrame) -> bool:
        if not frame.keyframe:
            return False
        now = self.clock()
        if self._last is not None and now - self._last < self.min_interval:
            return False
        self._last = now
        return True


class DecodeError(Exception):
    pass


class KeyframeDecoder:
    """Turns one Annex-B keyframe access unit into a picture no wider than ``max_width``."""

    def __init__(self, max_width: int = MAX_WIDTH) -> None:
        import av

        self._av = av
        self.max_width = max_width
        self._codec = av.CodecContext.create("h264", "r")

    def decode(self, access_unit: bytes) -> Image:
        try:
            frames = self._codec.decode(self._av.Packet(access_unit))
        except self._av.FFmpegError as exc:
            raise DecodeError(f"cannot decode keyframe: {exc}") from exc
        if not frames:
            raise DecodeError("the decoder returned no picture for a keyframe")
        frame = frames[-1]
        if frame.width > self.max_width:
            height = max(2, round(frame.height * self.max_width / frame.width / 2) * 2)
            frame = frame.reformat(width=self.max_width, height=height)
        return frame.to_image()
