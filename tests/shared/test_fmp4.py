"""The hand-written fMP4 boxes: FFmpeg reads them back frame for frame, with the right times and codec string."""

from __future__ import annotations

import io

import av
import numpy as np

from node.capture.encode import H264Encoder
from shared.fanout import AccessUnit
from shared.fmp4_live import Fmp4Stream, live_target
from shared.protocol import fmp4
from shared.protocol.live import LiveInit

BASE_US = 1_700_000_000_000_000


def units(count: int = 12, fps: int = 10) -> list[AccessUnit]:
    enc = H264Encoder(160, 120, fps, keyframe_interval_s=0.5)
    rng = np.random.default_rng(1)
    out = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (120, 160, 3), np.uint8), format="rgb24")
        out += [AccessUnit.build(u.capture_us, u.keyframe, u.data)
                for u in enc.encode(frame.reformat(format="yuv420p"), BASE_US + i * 100_000)]
    return out


def test_nal_units_split_three_and_four_byte_start_codes():
    assert fmp4.nal_units(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x68c\x00\x00\x01\x65def") == [b"\x67ab", b"\x68c",
                                                                                             b"\x65def"]
    assert fmp4.nal_units(b"") == []


def test_stream_plays_back_in_ffmpeg_with_capture_times():
    aus = units()
    stream = Fmp4Stream(LiveInit("cam0", "h264", 160, 120, 10))
    text, init = stream.header(aus[0])
    fragments = [stream.fragment(u) for u in aus]
    assert '"mime": "video/mp4; codecs=\\"avc1.42c0' in text and init[4:8] == b"ftyp"
    assert stream.fragment(aus[3]) is fragments[3], "each unit is built once; every viewer gets the same bytes"
    with av.open(io.BytesIO(init + b"".join(fragments)), format="mp4") as container:
        video = container.streams.video[0]
        decoded = [(f.pts, f.width) for f in container.decode(video)]
    assert len(decoded) == len(aus) and all(w == 160 for _, w in decoded)
    assert [pts for pts, _ in decoded] == [i * 9000 for i in range(len(aus))]  # 90 kHz since the first frame


def test_live_target_reads_camera_and_format():
    assert live_target("/live/cam0") == ("cam0", False)
    assert live_target("/live/cam0?token=x&format=fmp4", ["cam0"]) == ("cam0", True)
    for path, error in (("/live/cam0?format=vp9", ValueError), ("/live/cam9", LookupError)):
        try:
            live_target(path, ["cam0"])
        except error:
            continue
        raise AssertionError(f"{path} accepted")


def test_a_switched_fmp4_viewer_gets_a_new_init_and_decode_times_run_on():
    """``?stream=auto&format=fmp4``: main and sub share the camera's clock, so the timeline does not restart."""
    import asyncio
    import json

    from shared.fmp4_live import Fmp4Clock, LiveWriter

    class Sent:
        transport = None

        def __init__(self) -> None:
            self.messages: list[str | bytes] = []

        async def send(self, message: str | bytes) -> None:
            self.messages.append(message)

    aus = units()  # keyframes at 0 and 5, 10 (0.5 s at 10 fps)
    clock = Fmp4Clock()
    main = Fmp4Stream(LiveInit("cam0", "h264", 160, 120, 10), clock)
    sub = Fmp4Stream(LiveInit("cam0", "h264", 160, 120, 10, "sub"), clock)
    sent = Sent()

    async def play() -> None:
        writer = LiveWriter(sent, fmp4=True)  # type: ignore[arg-type]  # only send() is used
        await writer.begin(main.init, main)
        for unit in aus[:5]:
            await writer.send(unit)
        await writer.begin(sub.init, sub)  # the switch: the next unit is a keyframe (subscriptions start on one)
        for unit in aus[5:]:
            await writer.send(unit)

    asyncio.run(play())
    texts = [json.loads(m) for m in sent.messages if isinstance(m, str)]
    assert [t["stream"] for t in texts] == ["main", "sub"]
    boxes = [m[4:8] for m in sent.messages if isinstance(m, bytes)]
    assert boxes == [b"ftyp"] + [b"moof"] * 5 + [b"ftyp"] + [b"moof"] * (len(aus) - 5)
    after = next(m for m in sent.messages[8:] if isinstance(m, bytes) and m[4:8] == b"moof")
    assert after == sub.fragment(aus[5]) and clock.base_us == aus[0].capture_us, "sub's times continue main's"
