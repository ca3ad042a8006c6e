"""Trimming a held segment to the keyframe intervals an event wants (motion mode)."""

import io
import json

import av

from node.recording.segmenter import Segmenter, build_segment
from node.recording.trim import trim_segment
from tests.node.test_segmenter import FPS, H, W, encoded_units


def ten_second_segment(tmp_path):
    seg = Segmenter("cam0", 10, FPS)
    first = next(s for u in encoded_units(110) if (s := seg.push(u)))
    header, data = build_segment("node0", first, W, H, FPS)
    path = tmp_path / f"{header.start_us}.mp4"
    path.write_bytes(data)
    return path, header


def test_trim_keeps_from_the_keyframe_before_the_span_and_plays_alone(tmp_path):
    path, header = ten_second_segment(tmp_path)
    cut = trim_segment(path, header, header.start_us + 6_500_000, header.start_us + 8_200_000)
    assert cut is not None
    trimmed, data = cut
    assert trimmed.start_us == header.start_us + 6_000_000  # the keyframe at 6 s (1 s GOP)
    assert trimmed.frames == 22 and trimmed.end_us == header.start_us + 8_200_000  # frames before 8.2 s
    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
        meta = json.loads(c.metadata["comment"])
    assert len(frames) == trimmed.frames and frames[0].key_frame
    assert (meta["start_us"], meta["frames"]) == (trimmed.start_us, trimmed.frames)


def test_nothing_to_gain_gives_none(tmp_path):
    path, header = ten_second_segment(tmp_path)
    assert trim_segment(path, header, header.start_us, header.end_us) is None
    assert trim_segment(path, header, header.start_us + 400_000, header.end_us) is None  # same first keyframe
