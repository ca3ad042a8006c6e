"""The interface every camera source implements.

A source hands out raw frames as one contiguous YUV 4:2:0 planar array of
shape (height * 3 // 2, width), the layout PyAV's ``yuv420p`` expects, so the
encoder never converts. ``read`` is called from the camera's capture thread.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message says which and why."""


class CameraSource(Protocol):
    width: int
    height: int
    fps: float

    def read(self, frame_index: int) -> np.ndarray:
        """Return frame ``frame_index`` (counting from 0 at stream start) as YUV 4:2:0."""
        ...

    def close(self) -> None: ...
