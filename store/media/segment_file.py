"""What a stored segment file says about itself, so the index can be rebuilt from files alone.

Each segment MP4 carries a JSON document in its container ``comment`` tag, written by
``node/recording/segmenter.py`` (``segment_metadata``). For files without it (older nodes, or a
tag that does not parse) the camera and start come from the store's path layout,
``segments/CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``, and the frame count and end from
demuxing the packets (no decoding).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from shared.ids import InvalidId, check_id

# Must match node/recording/segmenter.py METADATA_TAG / METADATA_VERSION. Duplicated, not imported:
# the store does not load node code.
METADATA_TAG = "comment"
METADATA_VERSION = 1
_INT_FIELDS = ("start_us", "end_us", "frames", "width", "height")


class SegmentFileError(ValueError):
    """The file is not a readable segment MP4, or nothing says what it is."""


@dataclass(frozen=True)
class SegmentFileInfo:
    node: str | None  # None when only the path and packets could say (the node is not in either)
    camera: str
    start_us: int
    end_us: int
    frames: int
    width: int
    height: int
    size_bytes: int
    from_tag: bool  # True: read from the embedded metadata; False: derived from path and packets


def parse_metadata(text: str) -> dict[str, Any] | None:
    """The embedded document if it is a valid version-1 one, else None."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("sht") != METADATA_VERSION:
        return None
    if not isinstance(doc.get("node"), str) or not isinstance(doc.get("camera"), str):
        return None
    for name in _INT_FIELDS:
        value = doc.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
    try:
        check_id(doc["node"], "node id")
        check_id(doc["camera"], "camera id")
    except InvalidId:
        return None
    return doc


def identity_from_path(path: Path) -> tuple[str, int] | None:
    """``(camera, start_us)`` from ``.../CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``, or None."""
    parts = path.parts
    if len(parts) < 4 or path.suffix != ".mp4" or not path.stem.isdigit():
        return None
    try:
        camera = check_id(parts[-4], "camera id")
    except InvalidId:
        return None
    return camera, int(path.stem)


def read_segment_metadata(path: Path) -> SegmentFileInfo:
    """Describe a segment file from its embedded tag, else from its path and packets.

    Raises ``SegmentFileError`` if the file cannot be opened as an MP4 with a video
    stream, or if it has no tag and its path does not follow the store layout.
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
        with av.open(str(path), "r") as container:
            if "mp4" not in container.format.name.split(","):
                raise SegmentFileError(f"{path}: is a {container.format.name} file, not an MP4 segment")
            if not container.streams.video:
                raise SegmentFileError(f"{path}: MP4 has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            doc = parse_metadata(container.metadata.get(METADATA_TAG, ""))
            if doc is not None:
                return SegmentFileInfo(doc["node"], doc["camera"], doc["start_us"], doc["end_us"],
                                       doc["frames"], doc["width"], doc["height"], size, True)
            identity = identity_from_path(path)
            if identity is None:
                raise SegmentFileError(
                    f"{path}: no SHT metadata in its {METADATA_TAG!r} tag, and the path is not "
                    "segments/CAMERA/YYYY-MM-DD/HH/<start_us>.mp4, so its camera and start are unknown")
            frames, span_us = _demux_span(container, stream)
    except SegmentFileError:
        raise
    except (av.FFmpegError, OSError) as exc:
        # PyAV raises FFmpegError for bad data, OSError (e.g. from stat) for a missing file.
        raise SegmentFileError(f"{path}: not a readable MP4 segment: {exc}") from exc
    if frames == 0:
        raise SegmentFileError(f"{path}: MP4 has no video packets")
    camera, start_us = identity
    return SegmentFileInfo(None, camera, start_us, start_us + span_us, frames, width, height, size, False)


def _demux_span(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[int, int]:
    """Frame count and µs from pts 0 to just past the last frame, from packets alone."""
    tb = stream.time_base or Fraction(1, 1_000_000)
    frames, end = 0, 0
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue  # the demuxer's final flush packet
        frames += 1
        end = max(end, packet.pts + (packet.duration or 0))
    return frames, round(end * tb * 1_000_000)
