"""A camera's feed for the detector: decoding from the GOP's keyframe, sampling, and the loop switching decoding
off while a decode is in flight (the decoder belongs to that decode alone)."""

from __future__ import annotations

import asyncio

from node.capture.encode import H264Encoder
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from store.detect.frames import CameraFeed, Picture

W, H, FPS = 96, 64, 10
STEP = 100_000


def units(count: int, keyframe_every: int = 10) -> list[AccessUnit]:
    source, encoder = SyntheticSource(W, H, FPS), H264Encoder(W, H, FPS, keyframe_interval_s=keyframe_every / FPS)
    encoded = [u for i in range(count) for u in encoder.encode(source.read(i), i * STEP)] + encoder.flush()
    return [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded]


class Sink:
    def __init__(self) -> None:
        self.pictures: list[Picture] = []


def feed_with(sink: Sink, wanted=lambda t: True) -> CameraFeed:  # noqa: ANN001
    return CameraFeed(None, "cam0", "main", wanted, sink.pictures.append)  # type: ignore[arg-type]


async def test_pictures_come_from_the_keyframe_on_and_only_wanted_ones() -> None:
    sink = Sink()
    feed = feed_with(sink, wanted=lambda t: t >= 3 * STEP and t % (2 * STEP) == 0)
    stream = units(8)
    assert stream[0].keyframe
    feed.gop = list(stream[:5])
    feed.set_decoding(True)
    await feed._decode_pending()
    feed.gop.extend(stream[5:])
    await feed._decode_pending()  # continues with the same decoder: no keyframe needed
    assert [p.capture_us for p in sink.pictures] == [4 * STEP, 6 * STEP]
    assert sink.pictures[0].rgb.shape == (H, W, 3)


async def test_switching_off_during_a_decode_drops_its_result_and_breaks_nothing() -> None:
    sink = Sink()
    feed = feed_with(sink)
    feed.gop = units(30, keyframe_every=30)
    feed.set_decoding(True)
    decode = asyncio.create_task(feed._decode_pending())
    await asyncio.sleep(0)  # the decode is in its thread now
    feed.set_decoding(False)
    await decode
    assert sink.pictures == [] and feed._decoder is None
    feed.set_decoding(True)  # on again: from the keyframe, with a fresh decoder
    await feed._decode_pending()
    assert len(sink.pictures) == 30 and feed.decode_errors == 0


async def test_a_broken_unit_costs_the_decoder_not_the_feed() -> None:
    sink = Sink()
    feed = feed_with(sink)
    stream = units(4)
    feed.gop = [stream[0], AccessUnit.build(STEP, False, b"\x00\x00\x00\x01\x41garbage" * 50), *stream[1:]]
    feed.set_decoding(True)
    await feed._decode_pending()
    assert feed._decoder is None or feed.decode_errors == 0  # FFmpeg may conceal it; either way no exception
