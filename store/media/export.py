"""Export a time range of one camera as a single MP4, by remuxing its segments.

No decoding or encoding: packets are copied from each segment into one output
track with timestamps rebased so the clip starts at 0. The clip starts on the
keyframe at or before ``from_us``, so its first frame decodes and it covers the
whole range, and ends with the frame covering ``to_us`` (frames with time <
``to_us``). Gaps between segments stay gaps in time. Blocking: run it in a
worker thread; a ``cancel`` event set from elsewhere stops it between packets
(``ExportCancelled``), its temporary file already removed when it returns.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.container import OutputContainer
from av.video.stream import VideoStream

from shared.fsutil import atomic_file
from store.media.source import MediaInput, open_input
from store.segments import SegmentStoreError

MICROSECONDS = Fraction(1, 1_000_000)


# A segment to read: its file, or (storage that is not a local disk: S3) what yields what PyAV reads it from (a
# local copy, or a reader of its byte ranges) for as long as it is read, called once its turn comes (a long
# export never holds every segment at once).
SegmentSource = Path | Callable[[], AbstractContextManager[MediaInput]]


class ExportError(ValueError):
    """Nothing to export, or segments that cannot go into one clip."""


class ExportCancelled(Exception):
    """The ``cancel`` event was set (the client went away): nothing was left behind."""


@dataclass(frozen=True)
class ExportResult:
    start_us: int  # capture time of the clip's first frame (a keyframe at or before from_us)
    end_us: int  # just past the clip's last frame
    frames: int
    segments_used: int
    bytes: int


def export_clip(
    segments: Sequence[tuple[SegmentSource, int]],
    from_us: int,
    to_us: int,
    out: BinaryIO | Path,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ExportResult:
    """Remux ``[from_us, to_us)`` of one camera's ``(path, segment start_us)`` list into ``out``.

    A Path is written under a temporary name and renamed into place when complete; if
    ``cancel`` is set meanwhile, ``ExportCancelled`` is raised and the temporary is gone.
    A file object that cannot seek gets a fragmented MP4, which needs no seeking back.
    """
    if to_us <= from_us:
        raise ExportError(f"export range is empty: to_us {to_us} is not after from_us {from_us}")
    stop = cancel if cancel is not None else threading.Event()
    if isinstance(out, (str, Path)):
        return _export_to_path(segments, from_us, to_us, Path(out), progress, stop)
    writer = _Remuxer(out, seekable=_seekable(out))
    try:
        _run(writer, segments, from_us, to_us, progress, stop)
    finally:
        writer.close()
    return writer.result(from_us, to_us)


def _export_to_path(segments: Sequence[tuple[SegmentSource, int]], from_us: int, to_us: int, path: Path,
                    progress: Callable[[int, int], None] | None, cancel: threading.Event) -> ExportResult:
    with atomic_file(path) as f:  # any exception (ExportCancelled too) removes the temporary
        writer = _Remuxer(f, seekable=True)
        try:
            _run(writer, segments, from_us, to_us, progress, cancel)
        finally:
            writer.close()
        result = writer.result(from_us, to_us)
        _check_cancel(cancel)  # last chance before the rename puts a clip nobody wants into place
        return result


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise ExportCancelled("export cancelled")


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Remuxer:
    """The output side: opened on the first packet, so an empty export writes nothing."""

    def __init__(self, out: BinaryIO, seekable: bool) -> None:
        self.out = out
        self.seekable = seekable
        self.start_pos = out.tell() if seekable else 0
        self.written = 0  # bytes, counted at write() when the output cannot seek
        self.container: OutputContainer | None = None
        self.stream: VideoStream | None = None
        self.size: tuple[int, int] | None = None
        self.clip_start_us = 0
        self.end_us = 0
        self.frames = 0
        self.used = 0  # segments that contributed at least one frame
        self.last_dts_us: int | None = None

    def open(self, template: VideoStream, clip_start_us: int) -> None:
        # Non-seekable: fragments with an empty moov up front, the only MP4 written in one pass.
        options = {} if self.seekable else {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        target = self.out if self.seekable else _CountingWriter(self)
        self.container = av.open(target, "w", format="mp4", options=options)
        # A copy of the segment's codec parameters (avcC included); no encoder is opened.
        self.stream = self.container.add_stream_from_template(template)
        self.stream.time_base = template.time_base
        self.size = (template.codec_context.width, template.codec_context.height)
        self.clip_start_us = clip_start_us

    def mux(self, packet: av.Packet, pts_us: int, dts_us: int, duration_us: int) -> bool:
        assert self.container is not None and self.stream is not None
        if self.last_dts_us is not None and dts_us <= self.last_dts_us:
            return False  # overlapping segments: the muxer needs increasing dts, keep the first
        self.last_dts_us = dts_us
        packet.stream = self.stream
        packet.time_base = MICROSECONDS
        packet.pts = pts_us - self.clip_start_us
        packet.dts = dts_us - self.clip_start_us
        packet.duration = duration_us
        self.container.mux(packet)
        self.frames += 1
        self.end_us = max(self.end_us, pts_us + duration_us)
        return True

    def close(self) -> None:
        if self.container is not None:
            self.container.close()

    def result(self, from_us: int, to_us: int) -> ExportResult:
        if self.frames == 0:
            raise ExportError(f"no recorded frames between {from_us} and {to_us} in the given segments")
        size = (self.out.seek(0, io.SEEK_END) - self.start_pos) if self.seekable else self.written
        return ExportResult(self.clip_start_us, self.end_us, self.frames, self.used, size)


class _CountingWriter:
    """A write-only view of the output (no ``seek``), so PyAV treats it as a stream."""

    def __init__(self, owner: _Remuxer) -> None:
        self.owner = owner

    def write(self, data: bytes) -> int:
        n = self.owner.out.write(data)
        n = len(data) if n is None else n
        self.owner.written += n
        return n


def _run(writer: _Remuxer, segments: Sequence[tuple[SegmentSource, int]], from_us: int, to_us: int,
         progress: Callable[[int, int], None] | None, cancel: threading.Event) -> None:
    total = len(segments)
    # Until the clip starts, the current GOP (keyframe first) is held back: once a frame
    # reaches from_us, the clip starts at that GOP's keyframe.
    gop: list[tuple[av.Packet, int, int, int]] = []
    for done, (source, seg_start) in enumerate(segments, start=1):
        _check_cancel(cancel)
        if seg_start < to_us:
            with _local(source) as path:
                if _copy_segment(writer, path, seg_start, from_us, to_us, gop, cancel):
                    writer.used += 1
        if progress is not None:
            progress(done, total)


@contextlib.contextmanager
def _local(source: SegmentSource) -> Iterator[MediaInput]:
    if isinstance(source, (str, Path)):
        yield Path(source)
        return
    with contextlib.ExitStack() as held:
        try:
            path = held.enter_context(source())
        except SegmentStoreError:
            raise  # S3 down or the object changed: the request is answered "unavailable", not "no footage"
        except OSError as exc:  # the storage does not have it: the export cannot go on
            raise ExportError(f"cannot read segment for export: {exc}") from exc
        yield path


def _copy_segment(writer: _Remuxer, path: MediaInput, seg_start: int, from_us: int, to_us: int,
                  gop: list[tuple[av.Packet, int, int, int]], cancel: threading.Event) -> bool:
    used = False
    try:
        with open_input(path) as container:
            if not container.streams.video:
                raise ExportError(f"{path}: MP4 has no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base or MICROSECONDS
            if writer.container is None and from_us > seg_start:
                # Skip straight to the keyframe at or before from_us instead of reading from the start.
                container.seek(round(Fraction(from_us - seg_start, 1_000_000) / tb), stream=stream,
                               backward=True)
                gop.clear()
            for packet in container.demux(stream):
                _check_cancel(cancel)  # a packet at a time: a 24 h export stops within milliseconds
                if packet.size == 0 or packet.pts is None:
                    continue  # the demuxer's flush packet
                pts_us = seg_start + round(packet.pts * tb * 1_000_000)
                if pts_us >= to_us:
                    break  # frames with time < to_us only; the rest of the camera is later still
                dts_us = seg_start + round((packet.dts if packet.dts is not None else packet.pts) * tb * 1_000_000)
                duration_us = round((packet.duration or 0) * tb * 1_000_000)
                if writer.container is None:
                    if packet.is_keyframe:
                        gop.clear()
                    elif not gop:
                        continue  # no keyframe yet to decode it from
                    gop.append((packet, pts_us, dts_us, duration_us))
                    if pts_us + duration_us <= from_us:
                        continue
                    writer.open(stream, gop[0][1])
                    pending = list(gop)
                    gop.clear()
                else:
                    pending = [(packet, pts_us, dts_us, duration_us)]
                _check_size(writer, path, stream)
                for item in pending:
                    used = writer.mux(*item) or used
    except (ExportError, SegmentStoreError):
        raise
    except (av.FFmpegError, OSError) as exc:
        raise ExportError(f"{path}: cannot read segment for export: {exc}") from exc
    return used


def _check_size(writer: _Remuxer, path: MediaInput, stream: VideoStream) -> None:
    size = (stream.codec_context.width, stream.codec_context.height)
    if writer.size is not None and size != writer.size:
        raise ExportError(f"{path}: frame size {size[0]}x{size[1]} differs from the clip's "
                          f"{writer.size[0]}x{writer.size[1]}; export the ranges separately")
