"""Pictures from the store: the ``thumbnail`` call's JPEG (the frame nearest a time) and the ``snapshot`` call's
(an event's best frame with the detected object's box drawn), decoded off the event loop."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from console.export_file import Caller
from shared.protocol.results import Event, Thumbnail
from shared.query_client import StoreError

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


async def fetch_event_picture(store: Caller, event: Event) -> tuple[Image.Image, Thumbnail, str]:
    """The event's snapshot (its object boxed) where it has one, else the frame nearest its thumbnail time;
    and which of the two it is (``snapshot`` or ``thumbnail``)."""
    if event.snapshot:
        try:
            return (*await fetch_snapshot(store, event.id), "snapshot")
        except StoreError as exc:
            if exc.code != "not-found":  # gone since the list was loaded (retention): the thumbnail will do
                raise
    return (*await fetch_thumbnail(store, event.camera, event.thumb_us or event.start_us), "thumbnail")
