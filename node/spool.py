"""The node's local spool: finished segments wait here, durable, until the store has them.

Layout: ``SPOOL/CAMERA/<start_us>.mp4`` and beside it ``<start_us>.json``, the
segment header. The MP4 is written (atomically) before its header, and the
header is removed before the MP4, so a header always has its file and a file
without a header is an unfinished write. Nothing is deleted before the store
has acknowledged it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.fsutil import fsync_dir, remove_temporaries, write_atomic
from shared.ids import ID_PATTERN, check_id
from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import SegmentHeader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledSegment:
    header: SegmentHeader
    media_path: Path
    header_path: Path


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, header: SegmentHeader) -> tuple[Path, Path]:
        directory = self.root / check_id(header.camera, "camera id")
        return directory / f"{header.start_us}.mp4", directory / f"{header.start_us}.json"

    def put(self, header: SegmentHeader, data: bytes) -> SpooledSegment:
        """Store a segment durably (blocking: call from a worker thread)."""
        media, head = self._paths(header)
        write_atomic(media, data)
        write_atomic(head, json.dumps(header.to_json()).encode())
        return SpooledSegment(header, media, head)

    def remove(self, item: SpooledSegment) -> None:
        item.header_path.unlink(missing_ok=True)
        item.media_path.unlink(missing_ok=True)
        fsync_dir(item.header_path.parent)

    def camera_dirs(self) -> list[Path]:
        """Per-camera directories; anything else in the spool (e.g. ``.refused``) is not queued."""
        if not self.root.exists():
            return []
        return [d for d in self.root.iterdir() if d.is_dir() and ID_PATTERN.fullmatch(d.name)]

    def scan(self) -> list[SpooledSegment]:
        """Every complete segment waiting in the spool, oldest first; cleans up leftovers."""
        if not self.root.exists():
            return []
        dirs = self.camera_dirs()
        for leftover in remove_temporaries(self.root):
            log.warning("spool: removed a half-written file a crash left behind: %s", leftover)
        found = []
        for head in (h for d in dirs for h in d.glob("*.json")):
            media = head.with_suffix(".mp4")
            try:
                header = SegmentHeader.from_json(json.loads(head.read_text()))
            except (OSError, ValueError, ProtocolError) as exc:
                log.error("spool: unreadable segment header %s (%s); left in place", head, exc)
                continue
            if not media.exists():
                log.error("spool: header %s has no media file; removing the header", head)
                head.unlink(missing_ok=True)
                continue
            found.append(SpooledSegment(header, media, head))
        for media in (m for d in dirs for m in d.glob("*.mp4")):
            if not media.with_suffix(".json").exists():
                # Written but never given its header: an unfinished segment (issue 5 recovers these).
                log.warning("spool: %s has no header (unfinished write); discarding it", media)
                media.unlink(missing_ok=True)
        found.sort(key=lambda s: (s.header.start_us, s.header.camera))
        return found

    def usage(self) -> tuple[int, int]:
        """(segments, bytes) waiting."""
        count = size = 0
        for media in (m for d in self.camera_dirs() for m in d.glob("*.mp4")):
            count += 1
            size += media.stat().st_size
        return count, size
