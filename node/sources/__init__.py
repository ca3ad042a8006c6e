"""Camera sources as plug-ins: a registry from a SOURCE string's kind (``kind:arg``) to a factory.

Each source module registers its kind(s) with ``register_source`` when imported, with the usage
that the "unknown source" error lists. The built-in modules are imported on the first lookup
(``BUILTIN_MODULES``), so a node without a Pi never imports anything a Pi source needs until a
camera asks for one. Adding a kind is one module that calls ``register_source`` plus its line in
``BUILTIN_MODULES`` (docs/cameras.md, "Adding a source kind").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from node.sources.base import FrameSource, PacketSource, SourceError
from shared.config import CameraConfig

Source = FrameSource | PacketSource
# (the camera's config, the text after ``kind:``) -> an open source; raises SourceError saying why not
SourceFactory = Callable[[CameraConfig, str], Source]

BUILTIN_MODULES = (
    "node.sources.synthetic",
    "node.sources.pyav",
    "node.sources.picamera2",
)


@dataclass(frozen=True)
class SourceKind:
    name: str
    factory: SourceFactory
    usage: str  # the SOURCE forms it accepts, as the "unknown source" error lists them


_kinds: dict[str, SourceKind] = {}
_builtins_loaded = False


def register_source(name: str, factory: SourceFactory, usage: str) -> None:
    """Make ``name:ARG`` (and bare ``name``) open through ``factory``. A kind is registered once."""
    existing = _kinds.get(name)
    if existing is not None and existing.factory is not factory:
        raise ValueError(f"source kind {name!r} is already registered")
    _kinds[name] = SourceKind(name, factory, usage)


def unregister_source(name: str) -> None:
    """Forget a kind (for tests that register their own)."""
    _kinds.pop(name, None)


def source_kinds() -> dict[str, SourceKind]:
    """Every registered kind, the built-in ones included."""
    global _builtins_loaded
    if not _builtins_loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True
    return dict(_kinds)


def open_source(camera: CameraConfig) -> Source:
    """Open the source a camera's config names. Raises ``SourceError`` with a usable message."""
    name, _, arg = camera.source.partition(":")
    kind = source_kinds().get(name)
    if kind is None:
        usages = ", ".join(k.usage for k in _kinds.values())
        raise SourceError(f"camera {camera.id}: unknown source {camera.source!r}; use {usages}")
    return kind.factory(camera, arg)


__all__ = ["FrameSource", "PacketSource", "Source", "SourceError", "SourceFactory", "open_source",
           "register_source", "source_kinds", "unregister_source"]
