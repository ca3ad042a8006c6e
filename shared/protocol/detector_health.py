"""The store's object detector, as its ``/health`` (``detect``) and the ``fleet`` result report it.

Built by store/detect/service.py; read by the console's Fleet screen and ``sht``.
Every field may be missing (an older store) or null (not known yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.fields import FieldReader
from shared.protocol.errors import read_message
from shared.protocol.readings import flat_json, read_flat, read_flat_fields


@dataclass(frozen=True)
class CameraDetection:
    """One camera's share of the detector's work."""

    active: bool | None = None  # a motion event is open and its frames are being analysed
    frames: int | None = None  # frames analysed
    dropped: int | None = None  # frames not analysed because the detector was busy (counted, never waited for)
    labelled: int | None = None  # events that got a label
    stream: str | None = None  # the stream analysed: main or sub


@dataclass(frozen=True)
class DetectorHealth:
    """Where detection runs and how it keeps up."""

    mode: str | None = None  # off, local (in the store), workers (``sht detect`` processes)
    state: str | None = None  # off, starting, running, restarting, failed
    device: str | None = None  # cpu, cuda, openvino, tensorrt (local); the workers' devices, comma-separated
    provider: str | None = None  # the ONNX Runtime execution provider in use
    model: str | None = None  # model file name
    workers: int | None = None  # connected ``sht detect`` workers
    inference_ms_p50: float | None = None  # over recent frames
    inference_ms_p99: float | None = None
    queue: int | None = None  # frames waiting for the detector now
    queue_limit: int | None = None
    frames: int | None = None  # frames analysed since start
    local_frames: int | None = None  # of them, by the store's own detector process
    worker_frames: int | None = None  # of them, by ``sht detect`` workers
    dropped: int | None = None  # frames dropped since start (busy detector, queue full)
    errors: int | None = None  # frames the detector failed on
    restarts: int | None = None  # detector processes restarted after a crash or a hang
    labelled: int | None = None  # events labelled since start
    last_error: str | None = None
    cameras: dict[str, CameraDetection] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = flat_json(self)
        out["cameras"] = {cam: flat_json(c) for cam, c in self.cameras.items()}
        return out

    @classmethod
    def read(cls, r: FieldReader) -> DetectorHealth:
        cameras = {cam: read_flat(CameraDetection, c) for cam, c in r.keyed_children("cameras", {}).items()}
        return cls(**read_flat_fields(cls, r, exclude=("cameras",)), cameras=cameras)

    @classmethod
    def from_json(cls, data: object) -> DetectorHealth:
        return read_message(data, "detector health", cls.read)
