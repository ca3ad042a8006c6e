"""The two shapes a camera source comes in, and what every source shares.

A ``FrameSource`` hands out raw pictures (the synthetic scene, a Pi camera):
the capture thread (node/capture/thread.py) paces it at its frame rate, stamps
and encodes each picture. A ``PacketSource`` hands out packets that are
already encoded (files, network streams, V4L2 devices through FFmpeg): the
stream thread (node/capture/stream.py) paces it by its own timestamps or by
arrival, passes H.264 through, and decodes only when it must.

Frames are ``av.VideoFrame`` objects in ``yuv420p``, the encoder's own input
format, so nothing converts or copies between source and encoder (PyAV's
``VideoFrame.from_ndarray`` costs ~0.5 ms a 720p frame; rendering straight into
a fresh frame's planes costs ~0.02 ms). Every method runs on the camera's
capture thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Protocol, runtime_checkable

import av
import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message says which and why."""


class SourceUnavailable(SourceError):
    """A source that cannot be opened now for a reason the hardware may lift: a camera missing (a loose ribbon
    cable at boot), held by another process, or that failed to configure or start. At node start the camera
    is then ``stalled`` and opened again with backoff (node/capture/opener.py), not the node stopped; a
    config error (an unknown source, a bad size) stays a plain ``SourceError`` and stops the node.
    """


class SourceStalled(SourceError):
    """A frame source that stopped delivering (a camera that gives no frame within a few frame intervals).

    The source has closed what it had open by the time this is raised; the capture thread reports a stall
    and calls the source's ``reopen`` with backoff (node/capture/thread.py).
    """


@runtime_checkable
class FrameSource(Protocol):
    """Raw pictures on demand, paced by the capture thread's frame clock."""

    width: int
    height: int
    fps: float
    # The source's own small picture of the frame ``read`` just returned, at the sub stream's size (a Pi's
    # ISP lores output), or None: the sub stream then scales the main picture down itself.
    sub_frame: av.VideoFrame | None

    def read(self, frame_index: int) -> av.VideoFrame:
        """Return frame ``frame_index`` (counting from 0 at stream start) as yuv420p."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PacketSource(Protocol):
    """Encoded packets as they come, from an input that ``connect`` (re)opens.

    ``width``, ``height``, ``fps``, ``codec`` (FFmpeg's name), ``extradata`` and ``time_base`` describe
    the stream once connected. A ``live`` source is timed by arrival and reconnected when it drops; one
    that is not live (a file) is paced by its timestamps and, with ``loop``, rewound at its end.
    """

    width: int
    height: int
    fps: float
    codec: str
    extradata: bytes | None
    time_base: Fraction
    live: bool
    loop: bool
    target: str  # what it reads, for logs: a path, URL or device

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None:
        """(Re)open the input; raises ``SourceError`` saying why it cannot."""
        ...

    def packets(self) -> Iterator[av.Packet]:
        """Video packets as they come (H.264 in Annex-B); ends at the end of the input or of a loop pass."""
        ...

    def decode(self, packet: av.Packet) -> list[av.VideoFrame]: ...

    def rewind(self) -> None: ...

    def disconnect(self) -> None: ...

    def close(self) -> None: ...


def plane_view(frame: av.VideoFrame, index: int) -> np.ndarray:
    """A writable 2-D numpy view of one plane of a frame, without its row padding."""
    plane = frame.planes[index]
    buffer = memoryview(plane)  # type: ignore[arg-type]  # planes export the buffer protocol
    rows = np.frombuffer(buffer, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]
