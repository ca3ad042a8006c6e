"""Sources are plug-ins: a kind registered in one place records like the built-in ones."""

from __future__ import annotations

import asyncio

import av
import pytest

from node.capture.master import Camera
from node.recording.recorder import Recorder
from node.recording.spool import Spool, SpooledSegment
from node.sources import open_source, register_source, source_kinds, unregister_source
from node.sources.base import FrameSource, PacketSource, SourceError, plane_view
from shared.config import CameraConfig


class FlatSource(FrameSource):
    """The whole kind: a grey picture whose brightness is the source's argument."""

    sub_frame = None

    def __init__(self, camera: CameraConfig, arg: str) -> None:
        self.width, self.height, self.fps = camera.width, camera.height, camera.fps
        self.luma = int(arg or 128)
        self.closed = False

    def read(self, frame_index: int) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        plane_view(frame, 0)[:] = self.luma
        plane_view(frame, 1)[:] = plane_view(frame, 2)[:] = 128
        return frame

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def flat_kind():
    register_source("flat", FlatSource, "'flat[:LUMA]'")
    yield
    unregister_source("flat")


def test_the_built_in_kinds_are_registered_with_their_usage():
    kinds = source_kinds()
    assert {"synthetic", "file", "url", "v4l2", "picamera2"} <= set(kinds)
    # Every kind's usage, in the order the kinds registered (a test module that imports node.sources.picamera2
    # first puts it first), so not in a fixed order.
    with pytest.raises(SourceError, match=r"unknown source 'nope:x'; use ") as unknown:
        open_source(CameraConfig(id="c", source="nope:x"))
    assert "'synthetic'" in str(unknown.value) and "'picamera2[:N]'" in str(unknown.value)


def test_the_two_shapes_are_told_apart(tmp_path):
    synthetic = open_source(CameraConfig(id="c", source="synthetic", width=64, height=36))
    assert isinstance(synthetic, FrameSource) and not isinstance(synthetic, PacketSource)


def test_a_new_kind_lists_itself_and_records(flat_kind, tmp_path):
    with pytest.raises(SourceError, match=r"'flat\[:LUMA\]'"):
        open_source(CameraConfig(id="c", source="nope"))
    with pytest.raises(ValueError, match="already registered"):
        register_source("flat", lambda camera, arg: FlatSource(camera, arg), "again")

    async def run() -> list[SpooledSegment]:
        camera = Camera(CameraConfig(id="cam0", source="flat:200", width=160, height=90, fps=10))
        spooled: list[SpooledSegment] = []

        async def on_spooled(item: SpooledSegment) -> None:
            spooled.append(item)

        async def on_lost(*_: object) -> None:
            raise AssertionError("nothing may be lost")

        recorder = Recorder("node0", camera, 1.0, Spool(tmp_path / "spool"), on_spooled, on_lost)
        task = asyncio.create_task(recorder.run())
        camera.start(asyncio.get_running_loop())
        await asyncio.sleep(2.5)
        assert camera.health().state == "up" and camera.health().encoder == "libx264"
        await camera.stop()
        await task
        return spooled

    spooled = asyncio.run(run())
    assert len(spooled) >= 2
    with av.open(str(spooled[0].media_path)) as container:
        picture = next(container.decode(video=0))
    assert abs(int(picture.to_ndarray()[:90, :160].mean()) - 200) <= 2  # the flat kind's picture, recorded
