"""Video as coloured half blocks (``▀``: the upper pixel the foreground, the lower one the background), cheap
enough to redraw ten times a second.

textual-image's half-block widget renders through Rich: a new ``Style`` and two
``Color`` objects per cell, then Textual splits, crops and filters the segments,
~250 ms a 120x34 picture on this project's machines (measured by ``just bench
console-playback``), so a playing picture got ~4 screen updates a second at half a
core. Here the lines (``Strip``) are built beforehand, in the decoding thread: each
colour is cut to ``BITS`` bits a channel, a cell's style is looked up by its two
colours in a cache (a camera's scene changes little between frames, so most are
hits), and runs of equal cells become one segment. The widget only hands out lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

if TYPE_CHECKING:
    from PIL.Image import Image

BITS = 5  # per channel: 32 levels, invisible in a half-block picture
MAX_STYLES = 100_000  # the cache is emptied when it grows past this
_SHIFT = 8 - BITS
_LEVEL = [round(q * 255 / ((1 << BITS) - 1)) for q in range(1 << BITS)]
_styles: dict[int, Style] = {}


def _colour(key: int) -> Color:
    mask = (1 << BITS) - 1
    return Color.from_rgb(_LEVEL[key >> 2 * BITS], _LEVEL[(key >> BITS) & mask], _LEVEL[key & mask])


def _style(key: int) -> Style:
    style = _styles.get(key)
    if style is None:
        if len(_styles) >= MAX_STYLES:
            _styles.clear()
        style = Style(color=_colour(key >> 3 * BITS), bgcolor=_colour(key & ((1 << 3 * BITS) - 1)))
        _styles[key] = style
    return style


def halfblock_strips(image: Image) -> list[Strip]:
    """One ``Strip`` per two rows of pixels, one cell per column."""
    pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    if pixels.shape[0] % 2:
        pixels = np.concatenate([pixels, np.zeros_like(pixels[:1])])
    q = (pixels >> _SHIFT).astype(np.int64)
    packed = (q[..., 0] << 2 * BITS) | (q[..., 1] << BITS) | q[..., 2]
    keys = (packed[0::2] << 3 * BITS) | packed[1::2]
    strips = []
    for row in keys.tolist():
        segments = []
        run_key, run = row[0], 0
        for key in row:
            if key == run_key:
                run += 1
            else:
                segments.append(Segment("▀" * run, _style(run_key)))
                run_key, run = key, 1
        segments.append(Segment("▀" * run, _style(run_key)))
        strips.append(Strip(segments, len(row)))
    return strips


class HalfBlockPicture(Widget):
    """Shows lines made by ``halfblock_strips``; its size is set by whoever places it."""

    DEFAULT_CSS = "HalfBlockPicture { width: auto; height: auto; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._strips: list[Strip] = []
        self.image: Image | None = None  # the picture shown (for tests)

    def show(self, image: Image, strips: list[Strip]) -> None:
        self.image, self._strips = image, strips
        self.refresh()

    def render_line(self, y: int) -> Strip:
        if y < len(self._strips):
            return self._strips[y].crop(0, self.size.width)
        return Strip.blank(self.size.width)
