"""Trimming a held segment to the keyframe intervals an event wants (motion mode)."""

import io
import json

import av
from hypothesis import given
from hypothesis import strategies as st

from node.recording.segmenter import Segmenter, build_segment
from node.recording.trim import frames_to_keep, trim_segment
from shared.fanout import AccessUnit
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
    cut = trim_segment(path, header, header.start_us + 6_500_000, header.start_us + 8_150_000)
    assert cut is not None
    trimmed, data = cut
    assert trimmed.start_us == header.start_us + 6_000_000  # the keyframe at 6 s (1 s GOP)
    assert trimmed.frames == 22 and trimmed.end_us == header.start_us + 8_200_000  # frames before 8.15 s
    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
        meta = json.loads(c.metadata["comment"])
    assert len(frames) == trimmed.frames and frames[0].key_frame
    assert (meta["start_us"], meta["frames"]) == (trimmed.start_us, trimmed.frames)


def test_nothing_to_gain_gives_none(tmp_path):
    path, header = ten_second_segment(tmp_path)
    assert trim_segment(path, header, header.start_us, header.end_us) is None
    assert trim_segment(path, header, header.start_us + 400_000, header.end_us) is None  # same first keyframe


def jittered_segment(tmp_path, jitter_us: dict[int, int]):
    """A 2 s segment (keyframes at 0 and 1 s) whose frames i were captured ``jitter_us[i]`` µs off the 100 ms
    grid: the MP4 stores capture times at 1/90000 s, so each reads back up to 6 µs either side."""
    units = [AccessUnit.build(u.capture_us + jitter_us.get(i, 0), u.keyframe, bytes(u.data))
             for i, u in enumerate(encoded_units(25))]
    seg = Segmenter("cam0", 2, FPS)
    first = next(s for u in units if (s := seg.push(u)))
    header, data = build_segment("node0", first, W, H, FPS)
    path = tmp_path / f"{header.start_us}.mp4"
    path.write_bytes(data)
    return path, header


def test_a_frame_captured_just_before_the_spans_end_is_kept_though_its_mp4_time_reads_after_it(tmp_path):
    path, header = jittered_segment(tmp_path, {1: 7})  # captured at 100 007 µs, read back as 100 011 µs
    cut = trim_segment(path, header, header.start_us, header.start_us + 100_009)
    assert cut is not None and cut[0].frames == 2


def test_a_trimmed_segment_never_ends_past_the_segment_it_was_cut_from(tmp_path):
    # Frames 105 ms apart, and the next segment's keyframe 5 ms after the last: the segment ends there, where its
    # last frame plus the mean interval (100 ms) would reach past it.
    path, header = jittered_segment(tmp_path, {i: 5_000 * i for i in range(1, 20)})
    assert header.end_us == header.start_us + 2_000_000
    cut = trim_segment(path, header, header.start_us + 1_500_000, header.end_us)
    assert cut is not None and cut[0].end_us == header.end_us


# Capture times, as (gap after the previous frame, keyframe, error of the time read back: a tick either side).
frame_lists = st.lists(st.tuples(st.integers(1, 200_000), st.booleans(), st.integers(-12, 12)), min_size=1,
                       max_size=40)


@given(frame_lists, st.integers(-100_000, 4_000_000), st.integers(0, 4_000_000))
def test_every_frame_captured_within_the_span_is_kept_whatever_the_rounding(frames, keep_from, length):
    """... from a keyframe on (or the segment's first frame), and from the one showing at the span's start
    unless the next came within the rounding of it."""
    true, read, keyframes, t = [], [], [], 0
    for gap, keyframe, error in frames:
        t += gap
        true.append(t)
        read.append(t + error)
        keyframes.append(keyframe)
    keep_to = keep_from + length
    wanted = [i for i, x in enumerate(true) if keep_from <= x < keep_to]
    showing = [i for i, x in enumerate(true) if x < keep_from and (i + 1 == len(true) or true[i + 1] > keep_from + 12)]
    if wanted and showing and showing[-1] + 1 == wanted[0]:
        wanted.insert(0, showing[-1])
    kept = frames_to_keep(read, keyframes, keep_from, keep_to, margin_us=12)
    if not wanted:
        return
    assert kept is not None
    first, last = kept
    assert first <= min(wanted) and last >= max(wanted)
    assert first == 0 or keyframes[first]
    assert all(x < keep_to + 24 for x in true[first:last + 1]), "no frame captured well after the span"
