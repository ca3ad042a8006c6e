"""Camera sources. ``open_source`` turns a SOURCE string from config into a ``CameraSource``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.sources.base import CameraSource, SourceError
from shared.config import CameraConfig

if TYPE_CHECKING:
    from node.sources.pyav import PyAVSource


def open_source(camera: CameraConfig) -> CameraSource | PyAVSource:
    """Open the source a camera's config names. Raises ``SourceError`` with a usable message.

    A ``PyAVSource`` (file:, url:, v4l2:) is driven by node/capture/stream.py rather than by the frame clock.
    """
    kind, _, arg = camera.source.partition(":")
    if kind in ("file", "url", "v4l2"):
        from node.sources.pyav import PyAVSource, parse_stream_source

        return PyAVSource(parse_stream_source(camera.source, camera), camera.fps)
    if kind == "picamera2":  # only on a Pi: picamera2 is imported when a camera asks for it
        from node.sources.picamera2 import open_picamera2

        return open_picamera2(camera, arg)
    if kind == "synthetic":
        from node.sources.scenario import load_scenario
        from node.sources.synthetic import SyntheticSource

        scenario = load_scenario(arg) if arg else None
        return SyntheticSource(camera.width, camera.height, camera.fps, scenario)
    raise SourceError(
        f"camera {camera.id}: unknown source {camera.source!r}; "
        "use 'synthetic', 'synthetic:path/to/scenario.json', 'file:PATH[?loop=1]', 'url:rtsp://…', "
        "'v4l2:/dev/videoN' or 'picamera2[:N]'"
    )


__all__ = ["CameraSource", "SourceError", "open_source"]
