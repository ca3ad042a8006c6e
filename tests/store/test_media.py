"""Thumbnails, clip export and in-file segment metadata, on real segments made by the node's code."""

import io
import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

import store.media.thumbs
from node.capture.encode import H264Encoder
from node.recording.segmenter import METADATA_TAG, FinishedSegment, Segmenter, build_segment, mux_mp4
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from shared.protocol.ingest import SegmentHeader
from store.ingest.writer import segment_relpath
from store.media.export import ExportError, export_clip
from store.media.segment_file import SegmentFileError, read_segment_metadata
from store.media.thumbs import ThumbnailCache, make_thumbnail

W, H, FPS = 320, 240, 10
FRAME_US = 100_000
T0 = 1_700_000_000_000_000
CAM = "cam0"


class Recorded:
    def __init__(self, root: Path) -> None:
        src, enc = SyntheticSource(W, H, FPS), H264Encoder(W, H, FPS, keyframe_interval_s=1.0)
        seg = Segmenter(CAM, segment_seconds=2, fps=FPS)
        encoded = [u for i in range(80) for u in enc.encode(src.read(i), T0 + i * FRAME_US)] + enc.flush()
        units = [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded]
        self.units = units
        self.finished: list[FinishedSegment] = [s for u in units if (s := seg.push(u))]
        if (last := seg.flush()) is not None:
            self.finished.append(last)
        self.headers: list[SegmentHeader] = []
        self.paths: list[Path] = []
        for s in self.finished:
            header, data = build_segment("node0", s, W, H, FPS)
            path = root / segment_relpath(CAM, header.start_us)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.headers.append(header)
            self.paths.append(path)

    def pairs(self, indexes: range | list[int]) -> list[tuple[Path, int]]:
        return [(self.paths[i], self.headers[i].start_us) for i in indexes]


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    r = Recorded(tmp_path_factory.mktemp("store"))
    assert [h.frames for h in r.headers] == [20, 20, 20, 20]
    return r


def decode_all(source: str | io.BytesIO) -> list[av.VideoFrame]:
    with av.open(source, "r") as c:
        return list(c.decode(video=0))


def pts_us(frame: av.VideoFrame) -> int:
    assert frame.pts is not None and frame.time_base is not None
    return round(frame.pts * frame.time_base * 1_000_000)


# --- metadata inside the MP4 -------------------------------------------------------------------

def test_metadata_round_trips_through_the_file(rec: Recorded) -> None:
    header, path = rec.headers[1], rec.paths[1]
    with av.open(str(path)) as c:
        doc = json.loads(c.metadata[METADATA_TAG])
    assert doc["sht"] == 1 and doc["node"] == "node0" and "sha256" not in doc
    info = read_segment_metadata(path)
    assert info.from_tag
    assert (info.node, info.camera, info.start_us, info.end_us, info.frames, info.width, info.height) == (
        header.node, header.camera, header.start_us, header.end_us, header.frames, W, H)
    assert info.size_bytes == header.bytes == path.stat().st_size


def test_metadata_falls_back_to_path_and_packets(rec: Recorded, tmp_path: Path) -> None:
    seg, header = rec.finished[2], rec.headers[2]
    path = tmp_path / segment_relpath(CAM, header.start_us)
    path.parent.mkdir(parents=True)
    path.write_bytes(mux_mp4(seg, W, H, FPS))  # an MP4 without the tag
    info = read_segment_metadata(path)
    assert not info.from_tag and info.node is None
    assert (info.camera, info.start_us, info.end_us, info.frames, info.width, info.height) == (
        CAM, header.start_us, header.end_us, 20, W, H)

    elsewhere = tmp_path / "clip.mp4"
    shutil.copy(path, elsewhere)
    with pytest.raises(SegmentFileError, match="camera and start are unknown"):
        read_segment_metadata(elsewhere)


@pytest.mark.parametrize("content", [b"", b"not an mp4 at all" * 100, None])
def test_unreadable_files_raise_segment_file_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "segments" / CAM / "2023-11-14" / "22" / f"{T0}.mp4"
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    with pytest.raises(SegmentFileError, match="not a readable MP4"):
        read_segment_metadata(path)


# --- thumbnails --------------------------------------------------------------------------------

def test_thumbnail_is_a_jpeg_of_the_requested_width(rec: Recorded) -> None:
    start = rec.headers[0].start_us
    thumb = make_thumbnail(rec.paths[0], start, start + 500_000, 160)
    assert thumb.jpeg[:2] == b"\xff\xd8" and thumb.jpeg[-2:] == b"\xff\xd9"
    (frame,) = decode_all(io.BytesIO(thumb.jpeg))
    assert (frame.width, frame.height) == (thumb.width, thumb.height) == (160, 120)
    assert thumb.frame_us == start + 500_000


@pytest.mark.parametrize("offset_us", [1_330_000, 1_260_000, 1_000_000, 0, 1_940_000])
def test_thumbnail_picks_the_frame_nearest_the_moment_even_mid_gop(rec: Recorded, offset_us: int) -> None:
    start, path = rec.headers[0].start_us, rec.paths[0]
    thumb = make_thumbnail(path, start, start + offset_us, W)
    assert abs(thumb.frame_us - (start + offset_us)) <= FRAME_US // 2
    # And it shows that frame: closer to it than to its neighbours.
    shown = decode_all(io.BytesIO(thumb.jpeg))[0].to_ndarray(format="gray").astype(np.int16)
    frames = decode_all(str(path))
    index = (thumb.frame_us - start) // FRAME_US
    errors = {i: np.abs(frames[i].to_ndarray(format="gray").astype(np.int16) - shown).mean()
              for i in range(max(0, index - 1), min(len(frames), index + 2))}
    assert min(errors, key=lambda i: errors[i]) == index


def test_thumbnail_never_goes_past_the_segment(rec: Recorded) -> None:
    start = rec.headers[0].start_us
    assert make_thumbnail(rec.paths[0], start, start + 60_000_000, 64).frame_us == start + 1_900_000
    assert make_thumbnail(rec.paths[0], start, start - 5_000_000, 64).frame_us == start


@pytest.mark.parametrize("width", [15, 3841, 0, -320])
def test_thumbnail_width_is_bounded(rec: Recorded, width: int) -> None:
    with pytest.raises(ValueError, match="16 to 3840"):
        make_thumbnail(rec.paths[0], rec.headers[0].start_us, rec.headers[0].start_us, width)


def test_thumbnail_of_an_unreadable_file_is_a_segment_file_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SegmentFileError):
        make_thumbnail(bad, T0, T0, 64)


def test_cache_hit_returns_the_same_bytes_without_decoding(rec: Recorded, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ThumbnailCache(tmp_path / "thumbs")
    start, path = rec.headers[1].start_us, rec.paths[1]
    first = cache.get_or_make(path, start, start + 730_000, 200)  # 200 px snaps up to 320, the source's width
    assert first.frame_us == start + 700_000 and (first.width, first.height) == (320, 240)
    assert first == make_thumbnail(path, start, start + 700_000, 320)
    (entry,) = (tmp_path / "thumbs").rglob("*.jpg")
    assert entry.relative_to(tmp_path / "thumbs").parts[:2] == (CAM, str(start))
    assert entry.read_bytes() == first.jpeg

    def no_decoding(*args: object) -> None:
        raise AssertionError("cache hit must not decode")

    monkeypatch.setattr(store.media.thumbs, "make_thumbnail", no_decoding)
    # Any moment rounding to the same frame hits the same entry.
    assert cache.get_or_make(path, start, start + 680_000, 200) == first
    assert cache.get_or_make(path, start, start + 700_000, 200) == first
    assert cache.get_or_make(path, start, start + 700_000, 3840) == first  # never wider than the source
    with pytest.raises(AssertionError, match="must not decode"):
        cache.get_or_make(path, start, start + 700_000, 100)  # another snapped width (160) is another entry
    cache.forget_segment(path, start)
    assert not list((tmp_path / "thumbs").rglob("*.jpg"))


# --- export ------------------------------------------------------------------------------------

def ffmpeg_exe() -> str | None:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def test_export_spanning_three_segments(rec: Recorded, tmp_path: Path) -> None:
    from_us = rec.headers[0].start_us + 1_250_000
    to_us = rec.headers[2].start_us + 500_000
    keyframe_us = max(u.capture_us for u in rec.units if u.keyframe and u.capture_us <= from_us)
    expected = [u for u in rec.units if keyframe_us <= u.capture_us < to_us]
    calls: list[tuple[int, int]] = []
    out = tmp_path / "clips" / "out.mp4"
    out.parent.mkdir()
    result = export_clip(rec.pairs(range(3)), from_us, to_us, out, lambda d, t: calls.append((d, t)))

    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert (result.start_us, result.end_us) == (keyframe_us, to_us)
    assert result.frames == len(expected) == 35 and result.segments_used == 3
    assert result.bytes == out.stat().st_size and [p.name for p in out.parent.iterdir()] == ["out.mp4"]
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        duration_us = (c.duration or 0)
    assert len(frames) == len(expected)
    assert frames[0].key_frame and frames[0].pts == 0
    times = [pts_us(f) for f in frames]
    assert times == [u.capture_us - keyframe_us for u in expected]
    assert duration_us >= to_us - from_us
    ffmpeg = ffmpeg_exe()
    if ffmpeg is not None:
        run = subprocess.run([ffmpeg, "-v", "error", "-i", str(out), "-f", "null", "-"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and run.stderr == ""


def test_export_to_file_objects_and_with_a_gap(rec: Recorded) -> None:
    from_us = rec.headers[0].start_us + 1_250_000
    to_us = rec.headers[2].start_us + 500_000
    buffer = io.BytesIO()
    # All four segments given, the middle one missing: a gap in time, not an error.
    result = export_clip(rec.pairs([0, 2, 3]), from_us, to_us, buffer)
    assert result.frames == 15 and result.segments_used == 2 and result.bytes == len(buffer.getvalue())
    frames = decode_all(io.BytesIO(buffer.getvalue()))
    assert len(frames) == 15
    assert pts_us(frames[-1]) == to_us - FRAME_US - (from_us - 250_000)

    class Pipe:  # write-only, cannot seek: gets a fragmented MP4
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.chunks.append(bytes(data))
            return len(data)

    pipe = Pipe()
    streamed = export_clip(rec.pairs(range(4)), from_us, to_us, pipe)  # type: ignore[arg-type]
    data = b"".join(pipe.chunks)
    assert streamed.frames == 35 and streamed.segments_used == 3 and streamed.bytes == len(data)
    assert len(decode_all(io.BytesIO(data))) == 35


def test_export_from_a_keyframe_boundary_and_before_the_first_segment(rec: Recorded) -> None:
    start = rec.headers[1].start_us
    exact = export_clip(rec.pairs(range(4)), start, start + 1_000_000, io.BytesIO())
    assert (exact.start_us, exact.end_us, exact.frames, exact.segments_used) == (start, start + 1_000_000, 10, 1)
    early = export_clip(rec.pairs([1]), start - 10_000_000, start + 300_000, io.BytesIO())
    assert (early.start_us, early.frames) == (start, 3)


def test_export_of_nothing_is_an_export_error(rec: Recorded, tmp_path: Path) -> None:
    end = rec.headers[-1].end_us
    out = tmp_path / "none.mp4"
    with pytest.raises(ExportError, match="no recorded frames"):
        export_clip(rec.pairs(range(4)), end + 1_000_000, end + 5_000_000, out)
    with pytest.raises(ExportError, match="no recorded frames"):
        export_clip(rec.pairs(range(4)), T0 - 5_000_000, T0, out)
    with pytest.raises(ExportError, match="no recorded frames"):
        export_clip([], T0, T0 + 1_000_000, out)
    with pytest.raises(ExportError, match="range is empty"):
        export_clip(rec.pairs(range(4)), T0 + 1_000_000, T0 + 1_000_000, out)
    assert list(tmp_path.iterdir()) == []  # no output and no temporary left behind
    buffer = io.BytesIO()
    with pytest.raises(ExportError):
        export_clip(rec.pairs(range(4)), end, end + 1, buffer)
    assert buffer.getvalue() == b""

