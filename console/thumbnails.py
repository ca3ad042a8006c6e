"""Pictures from the store: the ``thumbnail`` call's JPEG (the frame nearest a time) and the ``snapshot`` call's
(an event's best frame with the detected object's box drawn), decoded off the event loop."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from console.export_file import Caller
from shared.protocol.results import Thumbnail

THUMB_WIDTH = 320


def open_jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def fetch_thumbnail(store: Caller, camera: str, at_us: int,
                          width: int = THUMB_WIDTH) -> tuple[Image.Image, Thumbnail]:
    """The frame nearest ``at_us`` as a PIL image, and the store's answer (``frame_us``, size)."""
    chunks: list[bytes] = []
    info = await store.call("thumbnail", camera=camera, at_us=at_us, width=width, on_chunk=chunks.append)
    return await asyncio.to_thread(open_jpeg, b"".join(chunks)), Thumbnail.from_json(info)


async def fetch_snapshot(store: Caller, event_id: int) -> tuple[Image.Image, Thumbnail]:
    """An event's snapshot as a PIL image, and the store's answer; ``not-found`` when the event has none."""
    chunks: list[bytes] = []
    info = await store.call("snapshot", event=event_id, on_chunk=chunks.append)
    return await asyncio.to_thread(open_jpeg, b"".join(chunks)), Thumbnail.from_json(info)
