"""Camera sources. ``open_source`` turns a SOURCE string from config into a ``CameraSource``."""

from __future__ import annotations

from node.sources.base import CameraSource, SourceError
from shared.config import CameraConfig


def open_source(camera: CameraConfig) -> CameraSource:
    """Open the source a camera's config names. Raises ``SourceError`` with a usable message."""
    kind, _, arg = camera.source.partition(":")
    if kind == "synthetic":
        from node.sources.scenario import load_scenario
        from node.sources.synthetic import SyntheticSource

        scenario = load_scenario(arg) if arg else None
        return SyntheticSource(camera.width, camera.height, camera.fps, scenario)
    raise SourceError(
        f"camera {camera.id}: unknown source {camera.source!r}; "
        "use 'synthetic' or 'synthetic:path/to/scenario.json'"
    )


__all__ = ["CameraSource", "SourceError", "open_source"]
