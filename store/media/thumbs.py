"""JPEG thumbnails of a moment in a stored segment, and an on-disk cache of them.

Blocking (decode + scale + encode): the server calls these from a worker thread.
JPEGs come from FFmpeg's ``mjpeg`` encoder through PyAV, so no imaging library is
needed. Only the keyframe at or before the moment and the frames up to it are
decoded, with one decoder thread, since the store shares its cores. On S3 the segment is
read in byte ranges (``SegmentStore.open_media``): its head, its index (at the end of the
MP4) and the GOP before the moment, a fraction of the object; the GOP's bytes, known from the index, are
fetched in one round trip before the decode reads them (``prefetch_gop``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

from shared.fsutil import TEMP_MARK, write_atomic
from store.media.segment_file import SegmentFileError, identity_from_path
from store.media.source import MediaInput, open_input
from store.segments import SegmentStoreError
from store.segments.ranged import RangedReader

MIN_WIDTH, MAX_WIDTH = 16, 3840
# The widths the cache makes (requests snap up to the next one): bounded entries per frame and memory per decode.
SNAP_WIDTHS = (160, 320, 640, 1280)
SEGMENT_INDEXES = 512  # segments whose frame times the cache remembers (a few KiB each at most)
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


def make_thumbnail(path: MediaInput, segment_start_us: int, at_us: int, width: int) -> Thumbnail:
    """The frame of ``path`` nearest ``at_us`` (clamped to the segment), as a JPEG ``width`` wide.

    Segment pts 0 is ``segment_start_us``. Raises ``ValueError`` for a bad width,
    ``SegmentFileError`` if the file cannot be read or decoded, and ``SegmentStoreError``
    if the storage failed under a ranged reader (the object deleted, S3 down).
    """
    check_width(width)
    best, frame_us = decode_frame_near(path, segment_start_us, at_us)
    height = scaled_height(width, best.width, best.height)
    return Thumbnail(encode_jpeg(best, width, height), frame_us, width, height)


def decode_frame_near(path: MediaInput, segment_start_us: int, at_us: int) -> tuple[av.VideoFrame, int]:
    """The decoded frame of ``path`` nearest ``at_us`` and its capture time; ``SegmentFileError`` if none."""
    try:
        with open_input(path) as container:
            if not container.streams.video:
                raise SegmentFileError(f"{path}: MP4 has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            tb = stream.time_base or Fraction(1, 1_000_000)
            target = round(Fraction(max(0, at_us - segment_start_us), 1_000_000) / tb)
            if isinstance(path, RangedReader):
                prefetch_gop(path, stream, target)
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
    except (SegmentFileError, SegmentStoreError):
        raise  # the storage's own failure stays one: the request is answered "unavailable", not "undecodable"
    except (av.FFmpegError, OSError) as exc:
        raise SegmentFileError(f"{path}: cannot decode a thumbnail: {exc}") from exc
    if best is None or best.pts is None:
        raise SegmentFileError(f"{path}: no decodable video frame")
    return best, segment_start_us + round(best.pts * tb * 1_000_000)


def prefetch_gop(reader: RangedReader, stream: VideoStream, target: int) -> None:
    """Have ``reader`` fetch the packets the decode below reads, from the keyframe at or before ``target`` to the
    first frame at or after it, in one round trip: FFmpeg reads them a buffer (32 KiB) at a time, so a GOP across
    two blocks would otherwise be two GETs one after the other. From the MP4's index (its entries are in decode
    order, which is presentation order: the node's H.264 has no B-frames); nothing is fetched without one. The
    reader fetches no block past these packets for the buffer fill that runs over their end (``prefetch``)."""
    entries = list(stream.index_entries)
    if not entries:
        return
    end = next((i for i, e in enumerate(entries) if e.timestamp >= target), len(entries) - 1)
    start = next((i for i in range(end, -1, -1) if entries[i].is_keyframe), 0)
    span = entries[start:end + 1]
    reader.prefetch(min(e.pos for e in span), max(e.pos + e.size for e in span))


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
    """Thumbnails on disk, keyed by segment, frame and width, bounded by size (least recently used go first).

    Layout: ``ROOT/CAMERA/<segment start_us>/<frame offset µs>-w<width>.jpg`` for
    files in the store layout (where ``(camera, start_us)`` names the file),
    ``ROOT/_/<hash of path>/...`` otherwise. ``at_us`` is first rounded to the
    nearest frame using the MP4's sample index (read from the header, no decoding),
    so all requests landing on one frame share one entry, and the width is snapped to
    one of ``SNAP_WIDTHS`` (never above the source's), so a segment has at most a few
    entries per frame. An in-memory index of the entries (read from disk once, on
    first use) finds hits and the least recently used without listing directories,
    and the frame times of recently asked segments are remembered, so a hit opens
    no MP4: it reads one small file.
    Thread-safe: the server calls it from worker threads.
    """

    def __init__(self, root: Path, max_bytes: int | None = None,
                 default_max_bytes: Callable[[int], int] | None = None) -> None:
        self.root = Path(root)
        self._max_bytes = max_bytes
        self._default_max_bytes = default_max_bytes or (lambda total: min(256 * 1024 * 1024, total // 100))
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, int] | None = None  # path -> bytes, least recently used first
        self._bytes = 0
        self._segments: OrderedDict[Path, tuple[tuple[int, ...], tuple[int, int]]] = OrderedDict()

    @property
    def max_bytes(self) -> int:
        """The size bound; unless given, from the disk the cache is on (checked once)."""
        if self._max_bytes is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._max_bytes = self._default_max_bytes(shutil.disk_usage(self.root).total)
        return self._max_bytes

    @property
    def bytes(self) -> int:
        with self._lock:
            self._load()
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())

    def segment_dir(self, path: Path, segment_start_us: int) -> Path:
        identity = identity_from_path(Path(path))
        if identity is not None:
            return self.root / identity[0] / str(int(segment_start_us))
        digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:20]
        return self.root / "_" / f"{digest}-{int(segment_start_us)}"

    def get_or_make(self, path: Path, segment_start_us: int, at_us: int, width: int,
                    fetch: Callable[[], AbstractContextManager[MediaInput]] | None = None) -> Thumbnail:
        """The thumbnail at ``at_us`` at the snapped width nearest ``width`` (``snap_width``).

        ``fetch``: where the segment is not a local file at ``path`` (S3), what yields what PyAV reads it from
        (``SegmentStore.open_media``: a reader of its byte ranges); ``path`` then only names the segment
        (``.../CAMERA/DAY/HOUR/<start>.mp4``), and a hit fetches nothing."""
        with contextlib.ExitStack() as held:
            def local() -> MediaInput:
                return path if fetch is None else held.enter_context(fetch())

            return self._get_or_make(path, segment_start_us, at_us, width, _Once(local))

    def _get_or_make(self, path: Path, segment_start_us: int, at_us: int, width: int,
                     local: _Once) -> Thumbnail:
        check_width(width)
        stamps, source = self._segment_index(path, local)
        offset_us = nearest_frame(stamps, max(0, at_us - segment_start_us))
        width = snap_width(width, source[0])
        height = scaled_height(width, *source)
        entry = self.segment_dir(path, segment_start_us) / f"{offset_us}-w{width}.jpg"
        if self._touch(entry):
            try:
                return Thumbnail(entry.read_bytes(), segment_start_us + offset_us, width, height)
            except FileNotFoundError:
                self._drop(entry)  # removed behind our back (retention, an admin): make it again
        thumb = make_thumbnail(local(), segment_start_us, segment_start_us + offset_us, width)
        if thumb.frame_us - segment_start_us == offset_us and len(thumb.jpeg) <= self.max_bytes:
            write_atomic(entry, thumb.jpeg)
            self._add(entry, len(thumb.jpeg))
        return thumb

    def forget_segment(self, path: Path, segment_start_us: int) -> None:
        """Drop a segment's thumbnails, e.g. when retention deletes its file."""
        directory = self.segment_dir(path, segment_start_us)
        with self._lock:
            self._segments.pop(Path(path), None)
            entries = self._load()
            for entry in [e for e in entries if e.parent == directory]:
                self._bytes -= entries.pop(entry)
        shutil.rmtree(directory, ignore_errors=True)

    def _segment_index(self, path: Path, local: Callable[[], MediaInput]) -> tuple[tuple[int, ...], tuple[int, int]]:
        """A segment's frame offsets and size, remembered for the last ``SEGMENT_INDEXES`` segments asked about,
        so a hit opens no MP4 (segment files never change under their name)."""
        key = Path(path)
        with self._lock:
            known = self._segments.get(key)
            if known is not None:
                self._segments.move_to_end(key)
                return known
        known = _frame_index(local())
        with self._lock:
            self._segments[key] = known
            while len(self._segments) > SEGMENT_INDEXES:
                self._segments.popitem(last=False)
        return known

    def _touch(self, entry: Path) -> bool:
        with self._lock:
            entries = self._load()
            if entry not in entries:
                return False
            entries.move_to_end(entry)
            return True

    def _drop(self, entry: Path) -> None:
        with self._lock:
            self._bytes -= self._load().pop(entry, 0)

    def _add(self, entry: Path, size: int) -> None:
        limit = self.max_bytes
        with self._lock:
            entries = self._load()
            self._bytes += size - entries.pop(entry, 0)
            entries[entry] = size
            evicted = []
            while self._bytes > limit and len(entries) > 1:
                old, old_size = entries.popitem(last=False)
                self._bytes -= old_size
                evicted.append(old)
        for old in evicted:  # outside the lock: other threads' hits need not wait for unlinks
            old.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                old.parent.rmdir()  # the segment's directory, once its last thumbnail is gone

    def _load(self) -> OrderedDict[Path, int]:
        """The index, read from disk on first use (oldest modified first); call with the lock held."""
        if self._entries is None:
            found: list[tuple[float, Path, int]] = []
            for directory, _dirs, names in os.walk(self.root):
                for name in names:
                    if name.endswith(".jpg") and TEMP_MARK not in name:
                        full = Path(directory) / name
                        with contextlib.suppress(FileNotFoundError):
                            st = full.stat()
                            found.append((st.st_mtime, full, st.st_size))
            found.sort(key=lambda item: item[0])
            self._entries = OrderedDict((full, size) for _, full, size in found)
            self._bytes = sum(self._entries.values())
        return self._entries

    def trim(self) -> int:
        """Evict down to ``max_bytes`` (a smaller bound than the files on disk hold); returns files removed."""
        limit = self.max_bytes
        with self._lock:
            entries = self._load()
            evicted = []
            while self._bytes > limit and entries:
                old, old_size = entries.popitem(last=False)
                self._bytes -= old_size
                evicted.append(old)
        for old in evicted:
            old.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                old.parent.rmdir()
        return len(evicted)


class _Once:
    """What the segment is read from, opened on first use only (a thumbnail the cache has fetches nothing); the
    index and the decode share it (a ranged reader's blocks fetched for the index serve the decode)."""

    def __init__(self, get: Callable[[], MediaInput]) -> None:
        self._get = get
        self._source: MediaInput | None = None

    def __call__(self) -> MediaInput:
        if self._source is None:
            self._source = self._get()
        return self._source


def snap_width(requested: int, source_width: int) -> int:
    """The smallest of ``SNAP_WIDTHS`` at least ``requested`` (the largest if none is), never wider than the
    source: a few cache entries per frame, and no upscaled giants (a 3840 px JPEG of a 640 px camera)."""
    snapped = next((w for w in SNAP_WIDTHS if w >= requested), SNAP_WIDTHS[-1])
    return max(MIN_WIDTH, min(snapped, source_width))


def _frame_index(path: MediaInput) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(µs offsets of the segment's frames from its sample index, source (width, height)), header only."""
    try:
        with open_input(path) as container:
            if not container.streams.video:
                raise SegmentFileError(f"{path}: MP4 has no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base or Fraction(1, 1_000_000)
            source = (stream.codec_context.width, stream.codec_context.height)
            # Index timestamps are dts; the node's H.264 has no B-frames, so dts == pts.
            return tuple(round(e.timestamp * tb * 1_000_000) for e in stream.index_entries), source
    except (SegmentFileError, SegmentStoreError):
        raise
    except (av.FFmpegError, OSError) as exc:
        raise SegmentFileError(f"{path}: not a readable MP4 segment: {exc}") from exc


def nearest_frame(stamps: tuple[int, ...], rel_us: int) -> int:
    """The frame offset nearest ``rel_us`` (the earlier on a tie); ``rel_us`` itself if there is no index
    (keyed on the exact request: still correct, fewer hits)."""
    if not stamps:
        return rel_us
    return min(stamps, key=lambda s: (abs(s - rel_us), s))
