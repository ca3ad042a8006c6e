"""The node's local spool: what the store does not hold yet waits here, durable.

Layout:
- ``SPOOL/CAMERA/<start_us>.mp4`` and beside it ``<start_us>.json``, the segment
  header. The MP4 is written (atomically) before its header, and the header is
  removed before the MP4, so a header always has its file and a file without
  a header is an unfinished write.
- ``SPOOL/CAMERA/<start_us>.journal``: the segment being recorded (node/recording/journal.py).
- ``SPOOL/CAMERA/time-floor``: the end of the latest segment ever spooled for the camera, kept after
  the segment has gone to the store: the next run stamps frames after it (node/capture/timebase.py),
  whatever the wall clock says at boot (docs/time.md).
- ``SPOOL/.events/<camera>-<kind>-<start_us>.json``: events waiting for the store; ``….open.json``: an
  event sent at its start, still going on (its closed version comes later under the first name). One left by
  an earlier run is closed at scan: that run can no longer finish it.
- ``SPOOL/.refused/``: what the store refused for good, kept for a human.

Nothing is deleted before the store has acknowledged it, except by the spool
limit, and every such drop is counted and reported as a loss (node/store_link/uploader.py).
All methods block: call them from a worker thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from node.recording.journal import SUFFIX as JOURNAL_SUFFIX
from node.recording.journal import read_journal
from node.recording.segmenter import FinishedSegment, build_segment
from shared.fsutil import fsync_dir, remove_temporaries, write_atomic
from shared.ids import ID_PATTERN, check_id
from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import EventRecord, SegmentHeader

log = logging.getLogger(__name__)
EVENTS_DIR = ".events"
OPEN_TAG = ".open"  # an open event's spool file: <camera>-<kind>-<start_us>.open.json
TIME_FLOOR = "time-floor"


@dataclass(frozen=True)
class SpooledSegment:
    header: SegmentHeader
    media_path: Path
    header_path: Path

    @property
    def start_us(self) -> int:
        return self.header.start_us

    @property
    def size(self) -> int:
        return self.header.bytes


@dataclass(frozen=True)
class SpooledEvent:
    record: EventRecord
    path: Path

    @property
    def start_us(self) -> int:
        return self.record.start_us

    size = 0  # events are tiny and never dropped to make room


SpooledItem = SpooledSegment | SpooledEvent


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._floors: dict[str, int] = {}  # camera -> the time floor last written

    def _paths(self, header: SegmentHeader, tag: str = "") -> tuple[Path, Path]:
        directory = self.root / check_id(header.camera, "camera id")
        name = f"{header.start_us}{tag}"
        return directory / f"{name}.mp4", directory / f"{name}.json"

    def journal_path(self, camera: str, start_us: int) -> Path:
        return self.root / check_id(camera, "camera id") / f"{int(start_us)}{JOURNAL_SUFFIX}"

    def put(self, header: SegmentHeader, data: bytes, tag: str = "") -> SpooledSegment:
        """``tag`` names a second version of a segment (a trimmed one) beside the first, never over it."""
        media, head = self._paths(header, tag)
        write_atomic(media, data)
        write_atomic(head, json.dumps(header.to_json()).encode())
        if header.end_us > self.time_floor(header.camera):
            write_atomic(media.parent / TIME_FLOOR, str(header.end_us).encode())
            self._floors[header.camera] = header.end_us
        return SpooledSegment(header, media, head)

    def time_floor(self, camera: str) -> int:
        """The end of the latest segment of ``camera`` ever spooled here, or 0."""
        if camera not in self._floors:
            try:
                self._floors[camera] = int((self.root / check_id(camera, "camera id") / TIME_FLOOR).read_text())
            except FileNotFoundError:
                self._floors[camera] = 0
            except (OSError, ValueError) as exc:
                log.error("spool: unreadable time floor of camera %s (%s); starting from the wall clock",
                          camera, exc)
                self._floors[camera] = 0
        return self._floors[camera]

    def put_event(self, record: EventRecord) -> SpooledEvent:
        path = self._event_path(record)
        write_atomic(path, record.serialize().encode())
        return SpooledEvent(record, path)

    def _event_path(self, record: EventRecord) -> Path:
        # An open event has its own name: removing it once sent must never remove its closed version.
        return self.root / EVENTS_DIR / f"{record.record_id}{OPEN_TAG if record.open else ''}.json"

    def remove(self, item: SpooledItem) -> None:
        if isinstance(item, SpooledEvent):
            item.path.unlink(missing_ok=True)
            fsync_dir(item.path.parent)
            return
        item.header_path.unlink(missing_ok=True)
        item.media_path.unlink(missing_ok=True)
        fsync_dir(item.header_path.parent)

    def camera_dirs(self) -> list[Path]:
        """Per-camera directories; anything else in the spool (``.events``, ``.refused``) is not one."""
        if not self.root.exists():
            return []
        return [d for d in self.root.iterdir() if d.is_dir() and ID_PATTERN.fullmatch(d.name)]

    def scan(self) -> list[SpooledItem]:
        """Everything waiting for the store, oldest first, after crash recovery and clean-up."""
        if not self.root.exists():
            return []
        for leftover in remove_temporaries(self.root):
            log.warning("spool: removed a half-written file a crash left behind: %s", leftover)
        dirs = self.camera_dirs()
        for journal in (j for d in dirs for j in d.glob(f"*{JOURNAL_SUFFIX}")):
            try:
                self._recover(journal)
            except Exception as exc:  # a full disk or a muxer error: keep the journal for the next start
                log.error("spool: could not recover %s (%s); left in place for the next start", journal, exc)
        found: list[SpooledItem] = []
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
                log.warning("spool: %s has no header (a spool write cut short; its journal, if any, was "
                            "recovered instead); discarding it", media)
                media.unlink(missing_ok=True)
        events_dir = self.root / EVENTS_DIR
        for path in sorted(events_dir.glob("*.json")) if events_dir.exists() else []:
            try:
                record = EventRecord.from_json(json.loads(path.read_text()))
                if record.open:
                    record, closed = self._close_left_open(record, path)
                    if closed is None:
                        continue
                    path = closed
                found.append(SpooledEvent(record, path))
            except (OSError, ValueError, ProtocolError) as exc:
                log.error("spool: unreadable event %s (%s); left in place", path, exc)
        found.sort(key=lambda s: (s.start_us, isinstance(s, SpooledEvent)))
        return found

    def _close_left_open(self, record: EventRecord, path: Path) -> tuple[EventRecord, Path | None]:
        """An open event an earlier run left: closed as far as it was known, so the store does not keep it
        open forever (its closed version, if spooled, wins). Returns the event to send, or a None path."""
        closed = dataclasses.replace(record, open=False)
        closed_path = self._event_path(closed)
        if closed_path.exists():
            path.unlink()
            return closed, None  # the closed version is read from its own file
        log.warning("spool: %s event %s was still open when the node stopped; closing it at %d", record.kind,
                    record.record_id, record.end_us)
        write_atomic(closed_path, closed.serialize().encode())
        path.unlink()
        fsync_dir(path.parent)
        return closed, closed_path

    def _recover(self, journal: Path) -> None:
        """Turn a journal left by a crash into a spooled segment, or discard it saying why."""
        if journal.with_suffix(".json").exists():
            log.info("spool: %s was already spooled as a segment; removing its journal", journal.name)
            journal.unlink(missing_ok=True)
            return
        try:
            recovered = read_journal(journal)
        except (OSError, ValueError) as exc:
            log.error("spool: discarding journal %s: %s", journal, exc)
            journal.unlink(missing_ok=True)
            return
        units = recovered.units
        if not units or not units[0].keyframe:
            log.error("spool: discarding journal %s: %s", journal,
                      "no complete access unit" if not units else "it does not start with a keyframe")
            journal.unlink(missing_ok=True)
            return
        head = recovered.header
        segment = FinishedSegment(head.camera, tuple(units), int(round(1_000_000 / head.fps)))
        header, data = build_segment(head.node, segment, head.width, head.height, head.fps)
        self.put(header, data)
        journal.unlink(missing_ok=True)
        log.warning("spool: recovered %d frames (%.1f s) of camera %s from a crash%s", len(units),
                    (header.end_us - header.start_us) / 1e6, head.camera,
                    f"; {recovered.dropped_bytes} bytes of a torn last frame dropped" if recovered.dropped_bytes
                    else "")

    def usage(self) -> tuple[int, int]:
        """(segments, bytes) waiting."""
        count = size = 0
        for media in (m for d in self.camera_dirs() for m in d.glob("*.mp4")):
            count += 1
            size += media.stat().st_size
        return count, size
