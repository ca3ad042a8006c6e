"""Shared simulation for the motion tests: real frames from ``SyntheticSource``, real encodes from
``H264Encoder``, at 320x180 and 10 fps, rendered once per scene and reused by every test."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from node.capture.encode import EncodedUnit, H264Encoder
from node.motion import DetectorConfig, EventTracker, make_detector, parse_zones
from node.sources.base import plane_view
from node.sources.scenario import load_scenario
from node.sources.synthetic import SyntheticSource
from shared.fields import FieldReader
from shared.protocol.ingest import EventRecord

W, H, FPS = 320, 180, 10
SCENES = Path(__file__).parent / "scenarios"


@dataclass(frozen=True)
class Clip:
    lumas: tuple[np.ndarray, ...]  # full-size Y planes
    units: tuple[EncodedUnit, ...]
    boxes: tuple[list[tuple[int, int, int, int, int]], ...]  # ground truth per frame

    def visible(self) -> tuple[float, float]:
        """Seconds: first frame any object is visible in, to just past the last."""
        frames = [i for i, b in enumerate(self.boxes) if b]
        return frames[0] / FPS, (frames[-1] + 1) / FPS


@cache
def clip(scene: str, seconds: float) -> Clip:
    src = SyntheticSource(W, H, FPS, load_scenario(scene if scene == "quiet" else str(SCENES / scene)))
    encoder = H264Encoder(W, H, FPS)
    lumas, units, boxes = [], [], []
    for i in range(int(seconds * FPS)):
        frame = src.read(i)
        lumas.append(plane_view(frame, 0).copy())
        units += encoder.encode(frame, capture_us(i))
        boxes.append(src.ground_truth(i))
    return Clip(tuple(lumas), tuple(units), tuple(boxes))


def capture_us(i: int) -> int:
    return i * 1_000_000 // FPS


def zones(*doc: dict) -> tuple:
    return parse_zones(FieldReader({"zones": list(doc)}, "test"))


def run(kind: str, scene: str, seconds: float, zone_doc: tuple[dict, ...] = ()) -> list[EventRecord]:
    """Detector ``kind`` over a scene, through an ``EventTracker``, flushed at the end."""
    c = clip(scene, seconds)
    config = DetectorConfig(kind=kind, zones=zones(*zone_doc))
    detector = make_detector(config, W, H, FPS)
    tracker = EventTracker("cam0", "node0", config.start_frames, config.quiet_s)
    events: list[EventRecord] = []
    if kind == "luma":
        for i, y in enumerate(c.lumas):
            events += tracker.update(capture_us(i), detector.detect_frame(y))  # type: ignore[union-attr]
    else:
        for u in c.units:
            events += tracker.update(u.capture_us, detector.feed(u.data, u.keyframe, u.capture_us))  # type: ignore[union-attr]
    return events + tracker.flush(capture_us(len(c.lumas)))
