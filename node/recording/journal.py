"""The recording journal: the segment in progress, on disk, one keyframe interval at a time.

A finished segment is muxed from memory and spooled atomically; until then its
access units also go to ``SPOOL/CAMERA/<start_us>.journal``, appended and
fsynced at every keyframe. If the node is killed, the next start turns each
journal back into an MP4 holding every complete access unit (the last GOP may
be cut short, never corrupt), so a crash costs at most about one keyframe
interval of footage instead of a whole segment.

File: b"SHTJ" | uint32 header length | JSON header | records, each
uint64 capture_us | uint32 flags (bit 0 keyframe) | uint32 length | Annex-B bytes.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.fanout import AccessUnit
from shared.fsutil import ensure_dir, fsync_dir

MAGIC = b"SHTJ"
PREFIX = struct.Struct(">4sI")
RECORD = struct.Struct(">QII")
MAX_UNIT_BYTES = 64 * 1024 * 1024
SUFFIX = ".journal"


@dataclass(frozen=True)
class JournalHeader:
    node: str
    camera: str
    width: int
    height: int
    fps: float
    codec: str = "h264"  # how to mux the recovered units: an H.265 camera's must not become avc1

    def encode(self) -> bytes:
        doc = json.dumps({"node": self.node, "camera": self.camera, "width": self.width,
                          "height": self.height, "fps": self.fps, "codec": self.codec}).encode()
        return PREFIX.pack(MAGIC, len(doc)) + doc


class JournalWriter:
    """Appends one segment's units; blocking methods are called from a worker thread."""

    def __init__(self, path: Path, header: JournalHeader) -> None:
        self.path = path
        self.header = header
        self._pending: list[bytes] = [header.encode()]
        self._file: BinaryIO | None = None

    def add(self, unit: AccessUnit) -> None:
        """Buffer a unit (cheap; on the event loop)."""
        data = unit.data
        self._pending.append(RECORD.pack(unit.capture_us, 1 if unit.keyframe else 0, len(data)))
        self._pending.append(bytes(data))

    def take(self) -> list[bytes]:
        out, self._pending = self._pending, []
        return out

    def write(self, chunks: list[bytes]) -> None:
        """Append and fsync what ``take`` returned (blocking)."""
        if self._file is None:
            ensure_dir(self.path.parent)
            self._file = open(self.path, "ab")
            fsync_dir(self.path.parent)
        self._file.write(b"".join(chunks))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """The segment is safely in the spool: the journal has done its job (blocking)."""
        self.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class RecoveredJournal:
    header: JournalHeader
    units: list[AccessUnit]
    dropped_bytes: int  # a torn last record, or garbage after it


def read_journal(path: Path) -> RecoveredJournal:
    """Every complete record of a journal; raises ValueError if even the header is unusable."""
    data = path.read_bytes()
    if len(data) < PREFIX.size:
        raise ValueError("shorter than its header")
    magic, head_len = PREFIX.unpack_from(data)
    if magic != MAGIC or PREFIX.size + head_len > len(data):
        raise ValueError("not a journal (bad magic or header length)")
    try:
        doc = json.loads(data[PREFIX.size:PREFIX.size + head_len])
        header = JournalHeader(str(doc["node"]), str(doc["camera"]), int(doc["width"]), int(doc["height"]),
                               float(doc["fps"]), str(doc.get("codec", "h264")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable header: {exc}") from None
    units: list[AccessUnit] = []
    pos = PREFIX.size + head_len
    while pos + RECORD.size <= len(data):
        capture_us, flags, length = RECORD.unpack_from(data, pos)
        end = pos + RECORD.size + length
        if flags & ~1 or length > MAX_UNIT_BYTES or end > len(data):
            break
        if units and capture_us <= units[-1].capture_us:
            break  # time must move forward; anything else is not ours
        units.append(AccessUnit.build(capture_us, bool(flags & 1), data[pos + RECORD.size:end]))
        pos = end
    return RecoveredJournal(header, units, len(data) - pos)
