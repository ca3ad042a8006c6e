import io

import av
import pytest

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from shared.protocol.ingest import sha256_hex

W, H, FPS = 160, 120, 10


def encoded_units(n: int, start_us: int = 1_700_000_000_000_000) -> list[AccessUnit]:
    src, enc = SyntheticSource(W, H, FPS), H264Encoder(W, H, FPS, keyframe_interval_s=1.0)
    units = []
    for i in range(n):
        for u in enc.encode(src.read(i), start_us + i * 100_000):
            units.append(AccessUnit.build(u.capture_us, u.keyframe, u.data))
    for u in enc.flush():
        units.append(AccessUnit.build(u.capture_us, u.keyframe, u.data))
    return units


def test_encoder_gives_one_unit_per_frame_with_fixed_gop_and_parameter_sets():
    units = encoded_units(25)
    assert len(units) == 25
    assert [i for i, u in enumerate(units) if u.keyframe] == [0, 10, 20]
    nal_types = {b & 0x1F for b in bytes(units[0].data).split(b"\x00\x00\x01")[1:] for b in b[:1]}
    assert {7, 8, 5} <= nal_types  # SPS, PPS and an IDR slice


def test_segments_cut_at_keyframes_and_each_decodes_alone():
    seg = Segmenter("cam0", segment_seconds=2, fps=FPS)
    finished = [s for u in encoded_units(45) if (s := seg.push(u)) is not None]
    finished.append(seg.flush())
    assert [len(s.units) for s in finished] == [20, 20, 5]
    for s in finished:
        assert s.units[0].keyframe
        header, data = build_segment("node0", s, W, H, FPS)
        assert header.sha256 == sha256_hex(data) and header.bytes == len(data)
        assert header.end_us - header.start_us == len(s.units) * 100_000
        with av.open(io.BytesIO(data)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == header.frames == len(s.units)
        assert (frames[0].width, frames[0].height) == (W, H)


def test_segmenter_never_starts_on_a_delta_frame():
    seg = Segmenter("cam0", 1, FPS)
    units = encoded_units(15)[3:]  # begins mid-GOP
    out = [s for u in units if (s := seg.push(u))]
    out.append(seg.flush())
    assert all(s.units[0].keyframe for s in out)
    assert sum(len(s.units) for s in out) == 5  # only from the keyframe at index 10


@pytest.mark.parametrize("seconds", [1, 3])
def test_segment_length_follows_the_setting(seconds):
    seg = Segmenter("cam0", seconds, FPS)
    out = [s for u in encoded_units(70) if (s := seg.push(u))]
    assert {len(s.units) for s in out} == {seconds * FPS}
