"""A camera's second, smaller encode (``substream``), on its capture thread, for tiles and slow viewers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import av

from node.capture.encode import EncodedUnit
from node.capture.encoders import VideoEncoder


@dataclass
class SubStream:
    """The source's own small picture when it has one (a Pi's lores stream, ``FrameSource.sub_frame``),
    else the main picture scaled down. A packet source's stream is decoded for it."""

    encoder: VideoEncoder
    width: int
    height: int
    on_unit: Callable[[EncodedUnit], None]
    # Privacy masks and timestamp at this size, for a picture that did not come from the filtered main frame.
    frame_filter: Callable[[av.VideoFrame, int], None] | None = None
    scaled: int = 0  # frames scaled from main (libswscale)
    from_source: int = 0  # frames the source made at this size (the ISP)

    def encode(self, frame: av.VideoFrame, capture_us: int, small: av.VideoFrame | None = None) -> None:
        if small is not None and (small.width, small.height) == (self.width, self.height):
            if self.frame_filter is not None:
                self.frame_filter(small, capture_us)
            self.from_source += 1
        else:
            small = frame.reformat(width=self.width, height=self.height, format="yuv420p")  # libswscale, ~1 ms
            self.scaled += 1
        for unit in self.encoder.encode(small, capture_us):
            self.on_unit(unit)

    def flush(self) -> None:
        for unit in self.encoder.flush():
            self.on_unit(unit)
