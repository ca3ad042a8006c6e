"""Export a clip from the store to a file, writing in a thread as the chunks arrive."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from console.formatting import file_stamp
from shared.protocol.results import ExportResult


class Caller(Protocol):
    async def call(self, method: str, *, on_chunk: Callable[[bytes], object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None, **params: Any) -> Any: ...


def clip_path(directory: Path, camera: str, start_us: int) -> Path:
    """``CAMERA-YYYYMMDD-HHMMSS.mp4`` in ``directory``, with ``-2``, ``-3``… if taken."""
    base = f"{camera}-{file_stamp(start_us)}"
    path, n = directory / f"{base}.mp4", 1
    while path.exists():
        n += 1
        path = directory / f"{base}-{n}.mp4"
    return path


async def export_clip(store: Caller, camera: str, from_us: int, to_us: int, path: Path,
                      on_progress: Callable[[int, int], None]) -> ExportResult:
    """Ask the store for one MP4 of ``camera`` over the range and write it to ``path``.

    The bytes go to ``path.part`` first and it is renamed only when the store says
    the export is complete, so ``path`` never holds half a clip.
    """
    part = path.with_name(path.name + ".part")
    chunks: queue.Queue[bytes | None] = queue.Queue()

    def write() -> None:
        with part.open("wb") as f:
            while (chunk := chunks.get()) is not None:
                f.write(chunk)

    writer = asyncio.ensure_future(asyncio.to_thread(write))
    ok = False
    try:
        result = await store.call("export", camera=camera, from_us=from_us, to_us=to_us, on_chunk=chunks.put,
                                  on_progress=on_progress)
        export = ExportResult.from_json(result)
        ok = True
    finally:
        chunks.put(None)
        try:
            await writer
        except OSError:
            ok = False
            raise
        finally:
            if not ok:
                await asyncio.to_thread(part.unlink, missing_ok=True)
    await asyncio.to_thread(part.replace, path)
    return export
