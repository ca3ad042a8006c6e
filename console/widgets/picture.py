"""Pictures in the terminal, through textual-image.

textual-image picks the best protocol when it is imported (Kitty graphics, Sixel,
coloured half blocks on a terminal; grey unicode shades when not on a terminal),
so this module must be imported before the app starts, as ``console.app`` does.
Under ``textual serve`` (no terminal, but a browser that shows colour) half blocks
are used. ``SHT_CONSOLE_IMAGES=halfcell|unicode|auto`` overrides the choice;
the tests force ``halfcell`` so their screenshots do not depend on the terminal.
"""

from __future__ import annotations

import os

from textual.widget import Widget
from textual_image.widget import HalfcellImage, UnicodeImage
from textual_image.widget import Image as AutoImage

RENDERER_ENV = "SHT_CONSOLE_IMAGES"
_RENDERERS: dict[str, type[Widget]] = {"halfcell": HalfcellImage, "unicode": UnicodeImage}


def picture_class() -> type[Widget]:
    choice = os.environ.get(RENDERER_ENV, "auto").strip().lower()
    if choice in _RENDERERS:
        return _RENDERERS[choice]
    if AutoImage is UnicodeImage and os.environ.get("TEXTUAL_DRIVER"):
        return HalfcellImage  # a browser through textual serve
    return AutoImage


def make_picture(*, id: str | None = None, classes: str | None = None) -> Widget:
    """An empty picture widget; set its ``image`` to a PIL image or JPEG bytes' stream to show one."""
    return picture_class()(None, id=id, classes=classes)  # type: ignore[arg-type]  # textual-image: image first


def cell_pixels() -> tuple[int, int]:
    """Width and height of one terminal cell in pixels, as textual-image measured them (10x20 if unknown)."""
    try:
        from textual_image._terminal import get_cell_size  # measured once, before the app started

        size = get_cell_size()
        return (size.width, size.height) if size.width > 0 and size.height > 0 else (10, 20)
    except Exception:  # noqa: BLE001 - any failure to measure means "assume the usual shape"
        return 10, 20


def fit_cells(image_width: int, image_height: int, max_columns: int, max_rows: int,
              cell: tuple[int, int] | None = None) -> tuple[int, int]:
    """The largest box of cells, within the limits, that shows the image without stretching it."""
    if image_width <= 0 or image_height <= 0 or max_columns <= 0 or max_rows <= 0:
        return max(0, max_columns), max(0, max_rows)
    cell_w, cell_h = cell or cell_pixels()
    aspect = image_width * cell_h / (image_height * cell_w)  # columns per row that keep the shape
    columns = min(max_columns, max(1, int(max_rows * aspect)))
    rows = min(max_rows, max(1, round(columns / aspect)))
    return columns, rows
