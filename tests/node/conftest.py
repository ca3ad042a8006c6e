"""tests/node fixtures. ``fake``: tests/fakes/picamera2 imported as ``picamera2``, its sensor quick to start and the
node's stall timeouts short, so the stall tests run in seconds; every picamera2 module is forgotten after."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import node.sources.picamera2 as pisource

FAKES = Path(__file__).parents[1] / "fakes"


def _forget(modules: dict[str, ModuleType]) -> list[str]:
    return [m for m in modules if m == "picamera2" or m.startswith("picamera2.")]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("FAKE_PICAMERA2_STARTUP_S", "0.1")
    for name in _forget(sys.modules):
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(pisource, "MIN_STALL_S", 0.4)
    monkeypatch.setattr(pisource, "FIRST_FRAME_S", 1.0)
    import picamera2

    yield picamera2
    for name in _forget(sys.modules):
        sys.modules.pop(name, None)
