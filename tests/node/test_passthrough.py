"""H.264 sources pass through bit-identical: no decode, no re-encode, parameter sets on every keyframe."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from node.capture.encode import EncodedUnit
from node.capture.sink import CaptureSink, StreamFormat
from node.capture.stream import StreamThread
from node.capture.thread import CaptureHealth
from node.sources.nal import H264_PPS, H264_SPS, nal_type, nal_units
from node.sources.pyav import PyAVSource, parse_stream_source
from shared.config import CameraConfig
from shared.protocol.health import CameraHealth
from tests.node.media import au_hash, make_clip, packet_nals, recorded_access_units, source_access_units
from tests.system.conftest import get_json, processes, wait_for_health  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    mp4 = make_clip(d / "clip.mp4", seconds=3)
    ts = make_clip(d / "clip.ts", seconds=3)
    mpeg4 = make_clip(d / "clip.avi", seconds=2, codec="mpeg4")
    return {"mp4": mp4, "ts": ts, "mpeg4": mpeg4}


def run_stream(camera: CameraConfig, seconds: float = 10.0) -> tuple[list[EncodedUnit], list[StreamFormat],
                                                                     CaptureHealth]:
    """Run a StreamThread until its file ends; what it published, the formats it announced, its health."""
    units: list[EncodedUnit] = []
    formats: list[StreamFormat] = []
    ended = threading.Event()
    errors: list[BaseException | None] = []
    source = PyAVSource(parse_stream_source(camera.source, camera))
    sink = CaptureSink(units.append, on_end=lambda e: (errors.append(e), ended.set()), on_format=formats.append)
    thread = StreamThread(camera, source, sink)
    thread.start()
    assert ended.wait(seconds), "the file should end by itself"
    assert errors == [None]
    return units, formats, thread.health()


@pytest.mark.parametrize("kind", ["mp4", "ts"])
def test_units_are_the_source_packets(clips, kind):
    units, formats, health = run_stream(CameraConfig(id="cam0", source=f"file:{clips[kind]}"))
    source, params = source_access_units(clips[kind])
    assert formats == [StreamFormat(320, 240, 10.0, "h264", "passthrough")]
    assert health.stream is not None and health.stream.mode == "passthrough" and health.state == "stopped"
    assert [(u.keyframe, au_hash(nal_units(u.data))) for u in units] == source
    for unit in units:
        assert unit.data[:4] == b"\x00\x00\x00\x01" or unit.data[:3] == b"\x00\x00\x01"  # Annex-B
        if unit.keyframe:
            carried = {n for n in nal_units(unit.data) if nal_type("h264", n) in (H264_SPS, H264_PPS)}
            assert carried == params
    times = [u.capture_us for u in units]
    assert times == sorted(times) and len(set(times)) == len(times)
    # Paced in real time by the file's own timestamps: 30 frames at 10 fps span 2.9 s.
    assert (times[-1] - times[0]) / 1e6 == pytest.approx(2.9, abs=0.01)


def test_ts_packets_are_passed_byte_for_byte(clips):
    """MPEG-TS already is Annex-B with SPS/PPS on keyframes: the units are its packets, unchanged."""
    import av

    units, _, health = run_stream(CameraConfig(id="cam0", source=f"file:{clips['ts']}"))
    with av.open(str(clips["ts"])) as c:
        packets = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    assert [u.data for u in units] == packets
    assert health.stream is not None and health.stream.keyframes_completed == 0


def test_non_h264_is_decoded_and_encoded(clips):
    units, formats, health = run_stream(CameraConfig(id="cam0", source=f"file:{clips['mpeg4']}"))
    assert health.stream is not None and health.stream.mode == "transcode"
    assert formats[0].encoder == "libx264" and formats[0].codec == "h264"
    assert len(units) == 20 and units[0].keyframe
    assert any(nal_type("h264", n) == H264_SPS for n in packet_nals(units[0].data))


def test_masks_force_a_transcode(clips):
    camera = CameraConfig(id="cam0", source=f"file:{clips['ts']}", masks=(((0, 0), (0.5, 0), (0.5, 1), (0, 1)),))
    units, formats, health = run_stream(camera)
    assert health.stream is not None and health.stream.mode == "transcode" and formats[0].encoder == "libx264"
    assert len(units) == 30


def test_looping_file_keeps_time_running(clips):
    camera = CameraConfig(id="cam0", source=f"file:{clips['ts']}?loop=1")
    units: list[EncodedUnit] = []
    source = PyAVSource(parse_stream_source(camera.source))
    done = threading.Event()
    thread = StreamThread(camera, source, CaptureSink(units.append, on_end=lambda e: done.set()))
    thread.start()
    time.sleep(3.6)
    thread.stop()
    assert done.wait(5)
    assert len(units) >= 34  # more than one pass of 30 frames
    times = [u.capture_us for u in units]
    steps = {round((b - a) / 1000) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {100}  # 10 fps across the loop point too


def test_bad_sources_say_why(tmp_path):
    from node.sources.base import SourceError

    with pytest.raises(SourceError, match="no such video file"):
        PyAVSource(parse_stream_source(f"file:{tmp_path}/missing.mp4"))
    with pytest.raises(SourceError, match="unknown option"):
        parse_stream_source("file:x.mp4?lop=1")
    with pytest.raises(SourceError, match="full URL"):
        parse_stream_source("url:camera")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open"):
        PyAVSource(parse_stream_source(f"file:{tmp_path}/junk.mp4"))
    spec = parse_stream_source("v4l2:/dev/video9?input_format=h264", CameraConfig(id="c", width=640, height=480))
    assert spec.options["input_format"] == "h264" and spec.options["video_size"] == "640x480"
    assert parse_stream_source("url:rtsp://cam/s?x=1").options["rtsp_transport"] == "tcp"


def test_a_node_records_a_file_bit_identically(clips, processes, tmp_path):  # noqa: F811
    """A real node process, a file made by the ffmpeg CLI, the MP4 segments it spools: same NAL units."""
    from tests.system.conftest import free_port

    port = free_port()
    spool = tmp_path / "spool"
    proc = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(port), "--no-auth",
                           "--spool", str(spool), "--segment-seconds", "1", "--camera", f"cam0=file:{clips['mp4']}")
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    deadline = time.monotonic() + 15
    while get_json(url + "/health")["cameras"]["cam0"]["state"] != "stopped":
        assert time.monotonic() < deadline, "the file should end"
        time.sleep(0.2)
    health = get_json(url + "/health")["cameras"]["cam0"]
    assert (health["encoder"], health["mode"], health["width"], health["height"]) == ("passthrough", "passthrough",
                                                                                      320, 240)
    processes.stop_all()
    files = sorted((spool / "cam0").glob("*.mp4"), key=lambda p: int(p.stem))
    assert len(files) == 3  # 3 s at 1 s segments
    recorded = recorded_access_units(files)
    source, params = source_access_units(clips["mp4"])
    assert [(k, h) for k, h, _ in recorded] == source
    assert all(p == params for k, _, p in recorded if k)


@pytest.mark.parametrize("kind", ["mp4", "mpeg4"])  # passed through (decoded for the sub only), transcoded
def test_a_packet_source_feeds_the_sub_stream(clips, kind):
    import asyncio

    import av

    from node.capture.master import Camera

    async def run() -> tuple[CameraHealth, list[av.VideoFrame], int]:
        camera = Camera(CameraConfig(id="cam0", source=f"file:{clips[kind]}", substream=(160, 120)))
        main = camera.subscribe("main", 100)
        camera.start(asyncio.get_running_loop())
        assert camera.sub_fanout is not None
        sub = camera.sub_fanout.subscribe("sub", 100)
        codec = av.CodecContext.create("h264", "r")
        pictures: list[av.VideoFrame] = []
        while (unit := await asyncio.wait_for(sub.get(), 10)) is not None:
            pictures += codec.decode(av.Packet(unit.data))
        main_units = 0
        while await main.get() is not None:
            main_units += 1
        health = camera.health()
        await camera.stop()
        return health, pictures, main_units

    health, pictures, main_units = asyncio.run(run())
    assert health.substream == "160x120" and health.substream_frames is not None
    assert health.substream_frames.scaled == main_units
    assert len(pictures) >= main_units - 1 and {(p.width, p.height) for p in pictures} == {(160, 120)}


def test_a_clock_step_on_a_passed_through_stream_waits_for_a_keyframe(clips):
    from node.capture.timebase import TimeBase
    from shared.clock import now_us

    shift = [0]
    timebase = TimeBase(wall_us=lambda: now_us() + shift[0])
    camera = CameraConfig(id="cam0", source=f"file:{clips['mp4']}")
    units: list[EncodedUnit] = []
    done = threading.Event()
    thread = StreamThread(camera, PyAVSource(parse_stream_source(camera.source)),
                          CaptureSink(units.append, on_end=lambda e: done.set()), timebase)
    thread.start()
    time.sleep(1.25)  # between two keyframes (a GOP is 1 s)
    shift[0] = 3600 * 1_000_000
    assert done.wait(10)
    times = [u.capture_us for u in units]
    assert times == sorted(times) and len(units) == 30
    jumps = [i for i, (a, b) in enumerate(zip(times, times[1:], strict=False), start=1) if b - a > 1_000_000]
    assert len(jumps) == 1 and units[jumps[0]].keyframe  # the jump lands where a segment can start
    assert thread.health().clock.steps_forward == 1
