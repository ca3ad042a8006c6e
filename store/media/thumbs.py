"""JPEG thumbnails of a moment in a stored segment, and an on-disk cache of them.

Blocking (decode + scale + encode): the server calls these from a worker thread.
JPEGs come from FFmpeg's ``mjpeg`` encoder through PyAV, so no imaging library is
needed. Only the keyframe at or before the moment and the frames up to it are
decoded, with one decoder thread, since the store shares its cores.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext

from shared.fsutil import write_atomic
from store.media.segment_file import SegmentFileError, identity_from_path

MIN_WIDTH, MAX_WIDTH = 16, 3840
# mjpeg quantiser scale, 2 (best) .. 31: 4 is close to "JPEG quality 85-90" at a few kB for 320 px.
JPEG_QSCALE = 4


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    frame_us: int  # capture time of the frame shown
    width: int
    height: int


def check_width(width: int) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"thumbnail width must be an integer from {MIN_WIDTH} to {MAX_WIDTH}, got {width!r}")


def scaled_height(width: int, src_width: int, src_height: int) -> int:
    """Height keeping the source aspect, rounded to an even number (4:2:0 chroma)."""
    return max(2, round(width * src_height / src_width / 2) * 2)


def make_thumbnail(path: Path, segment_start_us: int, at_us: int, width: int) -> Thumbnail:
    """The frame of ``path`` nearest ``at_us`` (clamped to the segment), as a JPEG ``width`` wide.

    Segment pts 0 is ``segment_start_us``. Raises ``ValueError`` for a bad width and
    ``SegmentFileError`` if the file cannot be read or decoded.
    """
    check_width(width)
    try:
        with av.open(str(path), "r") as container:
            if not container.streams.video:
                raise SegmentFileError(f"{path}: MP4 has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            tb = stream.time_base or Fraction(1, 1_000_000)
            target = round(Fraction(max(0, at_us - segment_start_us), 1_000_000) / tb)
            # Land on the keyframe at or before the target; decode forward from there.
            container.seek(target, stream=stream, backward=True, any_frame=False)
            best: av.VideoFrame | None = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                # Strictly closer only: on a tie keep the earlier frame, the one covering at_us.
                if best is None or best.pts is None or abs(frame.pts - target) < abs(best.pts - target):
                    best = frame
                if frame.pts >= target:
                    break  # nothing later can be nearer; never decode further than needed
    except SegmentFileError:
        raise
    except (av.FFmpegError, OSError) as exc:
        raise SegmentFileError(f"{path}: cannot decode a thumbnail: {exc}") from exc
    if best is None or best.pts is None:
        raise SegmentFileError(f"{path}: no decodable video frame")
    height = scaled_height(width, best.width, best.height)
    jpeg = encode_jpeg(best, width, height)
    frame_us = segment_start_us + round(best.pts * tb * 1_000_000)
    return Thumbnail(jpeg, frame_us, width, height)


def encode_jpeg(frame: av.VideoFrame, width: int, height: int) -> bytes:
    # yuvj420p: full-range YUV, what JPEG decoders assume; swscale expands the range.
    small = frame.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA")
    small.pts = 0
    ctx = cast(VideoCodecContext, av.CodecContext.create("mjpeg", "w"))
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    # qmin = qmax pins the quantiser: a fixed quality instead of the default 200 kb/s rate control.
    ctx.qmin = ctx.qmax = JPEG_QSCALE
    ctx.thread_count = 1
    packets = ctx.encode(small) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


class ThumbnailCache:
    """Thumbnails on disk, keyed by segment, frame and width.

    Layout: ``ROOT/CAMERA/<segment start_us>/<frame offset µs>-w<width>.jpg`` for
    files in the store layout (where ``(camera, start_us)`` names the file),
    ``ROOT/_/<hash of path>/...`` otherwise. ``at_us`` is first rounded to the
    nearest frame using the MP4's sample index (read from the header, no decoding),
    so all requests landing on one frame share one entry.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def segment_dir(self, path: Path, segment_start_us: int) -> Path:
        identity = identity_from_path(Path(path))
        if identity is not None:
            return self.root / identity[0] / str(int(segment_start_us))
        digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:20]
        return self.root / "_" / f"{digest}-{int(segment_start_us)}"

    def get_or_make(self, path: Path, segment_start_us: int, at_us: int, width: int) -> Thumbnail:
        check_width(width)
        offset_us, height = _nearest_frame(path, segment_start_us, at_us, width)
        entry = self.segment_dir(path, segment_start_us) / f"{offset_us}-w{width}.jpg"
        try:
            return Thumbnail(entry.read_bytes(), segment_start_us + offset_us, width, height)
        except FileNotFoundError:
            pass
        thumb = make_thumbnail(path, segment_start_us, segment_start_us + offset_us, width)
        if thumb.frame_us - segment_start_us == offset_us:  # always, unless the index lied
            write_atomic(entry, thumb.jpeg)
        return thumb

    def forget_segment(self, path: Path, segment_start_us: int) -> None:
        """Drop a segment's thumbnails, e.g. when retention deletes its file."""
        shutil.rmtree(self.segment_dir(path, segment_start_us), ignore_errors=True)


def _nearest_frame(path: Path, segment_start_us: int, at_us: int, width: int) -> tuple[int, int]:
    """(µs offset of the frame nearest ``at_us`` in the segment, thumbnail height), header only."""
    try:
        with av.open(str(path), "r") as container:
            if not container.streams.video:
                raise SegmentFileError(f"{path}: MP4 has no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base or Fraction(1, 1_000_000)
            height = scaled_height(width, stream.codec_context.width, stream.codec_context.height)
            rel = max(0, at_us - segment_start_us)
            # Index timestamps are dts; the node's H.264 has no B-frames, so dts == pts.
            stamps = [round(e.timestamp * tb * 1_000_000) for e in stream.index_entries]
    except SegmentFileError:
        raise
    except (av.FFmpegError, OSError) as exc:
        raise SegmentFileError(f"{path}: not a readable MP4 segment: {exc}") from exc
    if not stamps:
        return rel, height  # no index: key on the exact request (still correct, fewer hits)
    return min(stamps, key=lambda s: (abs(s - rel), s)), height
