"""The detection scheduler's queues, and when the store may tell an objects-mode node "none found"."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from shared.detect.result import Detection
from store.detect.frames import Picture
from store.detect.labelling import EventAnalysis
from store.detect.scheduler import QUEUE_PER_CAMERA, FrameScheduler
from store.detect.service import DetectionService
from store.detect.tracker import StationaryMemory

RGB = np.zeros((4, 4, 3), np.uint8)


class PersonModel:
    """A backend that answers at once: the built-in model's labels, nothing found."""

    busy = False
    info: dict[str, Any] = {"device": "cpu", "labels": ["person"]}

    async def detect(self, frame: np.ndarray, min_score: float | None = None, *, camera: str = "unknown",
                     capture_us: int = 0) -> list[Detection]:
        return []


async def test_live_pictures_push_the_oldest_out_and_recorded_ones_wait_for_room() -> None:
    seen: list[int] = []

    async def on_result(camera: str, picture: Picture, detections: list[Detection]) -> None:
        seen.append(picture.capture_us)

    scheduler = FrameScheduler(None, on_result)
    for t in range(QUEUE_PER_CAMERA + 3):
        scheduler.deliver(Picture("cam0", t, RGB))
    cam = scheduler.camera("cam0")
    assert cam.dropped == 3 and [p.capture_us for p in cam.queue][0] == 3  # the oldest went, counted
    waiting = asyncio.create_task(scheduler.put(Picture("cam0", 100, RGB)))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # a recorded picture is not dropped: it waits
    scheduler.local = PersonModel()
    runner = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(waiting, 5)
    assert await scheduler.drain("cam0", 5)
    runner.cancel()
    await scheduler.close()
    assert seen == [*range(3, QUEUE_PER_CAMERA + 3), 100] and cam.missed == 3


def service(model: Any) -> DetectionService:
    return DetectionService(None, None, None, model)  # type: ignore[arg-type]  # only the verdict rule is used


def event(objects: tuple[str, ...] = ("person",), seconds: float = 2.0, frames: int = 10) -> EventAnalysis:
    analysis = EventAnalysis(1, "cam0", 0, objects=objects, min_score=0.5, threshold=0.7,
                             stationary=StationaryMemory())
    analysis.end_us = int(seconds * 1_000_000)
    analysis.frames = frames
    return analysis


def test_none_found_is_said_only_for_an_event_watched_whole() -> None:
    detection = service(PersonModel())
    assert detection._watched_whole(event())
    assert not detection._watched_whole(event(frames=4))  # 2 s at 5 fps wants at least half of 10 pictures
    assert not detection._watched_whole(event(objects=("person", "car")))  # the model cannot see cars
    short = event(seconds=0.3, frames=1)
    assert detection._watched_whole(short)  # as many pictures as it lasted
    lost = event()
    detection.scheduler.camera("cam0").dropped += 1  # a picture of the camera lost while it ran
    assert not detection._watched_whole(lost)


def test_none_found_is_never_said_without_a_model_that_says_its_labels() -> None:
    class Unknown(PersonModel):
        info: dict[str, Any] = {"device": "cpu"}

    assert not service(Unknown())._watched_whole(event())
