"""OpenCV's sample videos (Debian's ``opencv-doc``) as H.264 MP4: test excerpts and the object benchmark's reels.

``vtest.avi`` (pedestrians on a campus, 768x576, MS-MPEG4 at 10 fps) and ``tree.avi`` (a tree in the wind,
320x240, Cinepak, 68 frames unevenly spread over 29.5 s) come in codecs no camera sends. Transcoded to H.264
(no B-frames, a keyframe every second, as a camera's stream) a node passes them through as it would a real
camera, so the node's CPU goes to what it does for a camera, not to transcoding.

Two shapes, both made here with PyAV:

- an **excerpt** (``tests/data/``, made by ``tools/make_test_footage.py``): a few seconds of a clip, its
  frames and their spacing as they are;
- a **reel** (``bench/objects_events.py``): the whole clip cut into pieces with a still picture (the piece's
  last frame, held) between them. Played in a loop, the raw clips give one endless motion event per camera
  (people are always moving in vtest, the tree always sways, and the loop's cut is motion too); the stills let
  the node's motion detector close an event after each piece, so N minutes give many events to count.
"""

from __future__ import annotations

import gzip
import math
import shutil
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av

DATA_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"),)
INSTALL_HINT = "apt-get install opencv-doc"
MS = Fraction(1, 1000)
KEYFRAME_S = 1.0  # a camera's usual GOP: a viewer (or the store's detector) joining waits at most this long
CRF = 28


@dataclass(frozen=True)
class Footage:
    """What ``transcode`` wrote."""

    path: Path
    width: int
    height: int
    frames: int  # frames written, stills included
    pieces: int
    duration_s: float  # the last frame's time plus one frame interval
    bytes: int


def find_clip(name: str, dirs: Sequence[Path] = DATA_DIRS) -> Path | None:
    """``NAME.avi`` (or Debian's older ``NAME.avi.gz``) in the first of ``dirs`` that has it."""
    for d in dirs:
        for candidate in (d / f"{name}.avi", d / f"{name}.avi.gz"):
            if candidate.is_file():
                return candidate
    return None


def open_clip(path: Path, tmp: Path) -> Path:
    """The clip as a file PyAV can open (a gzipped one is unpacked into ``tmp``)."""
    if path.suffix != ".gz":
        return path
    out = tmp / path.stem
    with gzip.open(path, "rb") as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def source_frames(path: Path) -> Iterator[tuple[float, av.VideoFrame]]:
    """(presentation time in seconds, yuv420p frame) of every frame of the clip, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 10)
            yield t, frame.reformat(format="yuv420p")


def clip_duration(path: Path) -> float:
    """The time of the clip's last frame (seconds): what ``reel_pieces`` cuts up."""
    return max((t for t, _ in source_frames(path)), default=0.0)


def reel_pieces(duration_s: float, piece_s: float) -> list[tuple[float, float]]:
    """The whole clip as consecutive ``[start, end)`` pieces of ``piece_s`` (the last one takes the rest)."""
    if piece_s <= 0:
        raise ValueError(f"piece_s must be positive, got {piece_s}")
    pieces: list[tuple[float, float]] = []
    start = 0.0
    while start <= duration_s:
        end = start + piece_s
        pieces.append((start, end if end <= duration_s else duration_s + 1e-3))
        start = end
    return pieces


class _Writer:
    """Frames into an H.264 MP4 at given output times (ms), a forced keyframe every ``keyframe_s``."""

    def __init__(self, dst: Path, width: int, height: int, rate: float, keyframe_s: float, crf: int) -> None:
        self.container = av.open(str(dst), "w", format="mp4")
        stream = self.container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = MS
        stream.time_base = MS
        # No B-frames and no scene-cut keyframes: like a camera, and the keyframes fall where we force them.
        stream.options = {"crf": str(crf), "preset": "slow",
                          "x264-params": "bframes=0:keyint=infinite:min-keyint=1:scenecut=0"}
        self.stream, self.keyframe_s = stream, keyframe_s
        self.width, self.height = width, height
        self.next_key_s = 0.0
        self.frames = 0
        self.last_ms = -1

    def write(self, t_s: float, frame: av.VideoFrame) -> None:
        ms = max(round(t_s * 1000), self.last_ms + 1)
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")  # a fresh frame: own pts, type
        out.pts, out.time_base = ms, MS
        if t_s >= self.next_key_s:
            out.pict_type = av.video.frame.PictureType.I
            self.next_key_s = t_s + self.keyframe_s
        self.container.mux(self.stream.encode(out))
        self.frames += 1
        self.last_ms = ms

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


def transcode(src: Path, dst: Path, pieces: Sequence[tuple[float, float]], gap_s: float = 0.0,
              keyframe_s: float = KEYFRAME_S, crf: int = CRF) -> Footage:
    """The frames of ``src`` inside ``pieces`` (``[start, end)`` seconds, in order, not overlapping) as H.264 MP4.

    Within a piece the frames keep their spacing. With ``gap_s`` > 0 each piece is followed by its last frame
    held still for ``gap_s`` (repeated at the piece's own frame interval). Output time starts at 0. One pass,
    one frame in memory at a time.
    """
    ordered = sorted(pieces)
    if not ordered or any(a >= b for a, b in ordered) or any(b > c for (_, b), (c, _) in pairwise(ordered)):
        raise ValueError(f"pieces must be non-empty [start, end) ranges that do not overlap, got {list(pieces)}")
    with av.open(str(src)) as probe:
        rate = float(probe.streams.video[0].average_rate or 10)
    writer: _Writer | None = None
    cursor = 0.0  # output time where the current piece starts
    current: int | None = None  # index into ordered of the piece being written
    first_t = last_t = 0.0
    last: av.VideoFrame | None = None
    deltas: list[float] = []
    pieces_written = 0

    def end_piece() -> None:
        nonlocal cursor
        assert writer is not None and last is not None
        interval = statistics.median(deltas) if deltas else 1.0 / rate
        cursor += last_t - first_t + interval
        if gap_s > 0:
            stills = max(1, math.ceil(gap_s / interval - 1e-6))  # counted, not summed: no float drift
            for k in range(stills):
                writer.write(cursor + k * interval, last)
            cursor += stills * interval

    try:
        for t, frame in source_frames(src):
            index = next((i for i, (a, b) in enumerate(ordered) if a <= t < b), None)
            if index != current and current is not None and last is not None:
                end_piece()
                current = None
            if index is None:
                continue
            if writer is None:
                writer = _Writer(dst, frame.width, frame.height, rate, keyframe_s, crf)
            if current is None:
                current, first_t, deltas = index, t, []
                pieces_written += 1
            else:
                deltas.append(t - last_t)
            writer.write(cursor + t - first_t, frame)
            last_t, last = t, frame
        if current is not None:
            end_piece()
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"{src}: no frames inside {list(pieces)}")
    return Footage(dst, writer.width, writer.height, writer.frames, pieces_written, round(cursor, 3),
                   dst.stat().st_size)


def excerpt(src: Path, dst: Path, start_s: float, seconds: float, crf: int = CRF) -> Footage:
    """``seconds`` of ``src`` from ``start_s``, its frames as they are."""
    return transcode(src, dst, [(start_s, start_s + seconds)], crf=crf)


def reel(src: Path, dst: Path, piece_s: float, gap_s: float, crf: int = CRF) -> Footage:
    """All of ``src`` in ``piece_s`` pieces, each followed by ``gap_s`` of its last frame held still."""
    return transcode(src, dst, reel_pieces(clip_duration(src), piece_s), gap_s=gap_s, crf=crf)
