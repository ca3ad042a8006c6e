"""The interface every camera source implements.

A source hands out ``av.VideoFrame`` objects in ``yuv420p``, the encoder's own
input format, so nothing converts or copies between source and encoder (PyAV's
``VideoFrame.from_ndarray`` costs ~0.5 ms a 720p frame; rendering straight into
a fresh frame's planes costs ~0.02 ms). ``read`` runs on the capture thread.
"""

from __future__ import annotations

from typing import Protocol

import av
import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message says which and why."""


class CameraSource(Protocol):
    width: int
    height: int
    fps: float

    def read(self, frame_index: int) -> av.VideoFrame:
        """Return frame ``frame_index`` (counting from 0 at stream start) as yuv420p."""
        ...

    def close(self) -> None: ...


def plane_view(frame: av.VideoFrame, index: int) -> np.ndarray:
    """A writable 2-D numpy view of one plane of a frame, without its row padding."""
    plane = frame.planes[index]
    buffer = memoryview(plane)  # type: ignore[arg-type]  # planes export the buffer protocol
    rows = np.frombuffer(buffer, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]
