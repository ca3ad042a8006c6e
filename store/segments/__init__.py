"""Where segment files live: the interface every part of the store reads, writes and deletes them through.

Two backends (docs/storage.md, "Segment storage"):

- ``store.segments.files.FileSegments``: a directory, by default ``ROOT/segments`` (durable write: temporary,
  fsync, rename, directory fsync);
- ``store.segments.s3.S3Segments``: a bucket of any S3-compatible object store (``--segments s3://...``), each
  PUT carrying the SHA-256 the node sent, which the server verifies.

A segment is known to a backend by its **name**, the layout ``CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``
(``segment_name``): a path below the directory, or an object key below the bucket's prefix. An index row's
``path`` is ``segments/`` + the name whatever the backend (``row_path``), so an index reads the same on both.

Calls are async, except ``open_local`` and ``open_media``, which worker threads call to decode or remux a
segment: ``open_local`` yields a local file (for S3 a whole copy in a bounded cache), for readers of every byte;
``open_media`` what PyAV can open, the file itself or (S3) a seekable reader that fetches only the byte ranges
read (``store/segments/ranged.py``), for thumbnails and exports, which read the index and a few GOPs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from shared.ids import check_id

if TYPE_CHECKING:
    from store.segments.ranged import RangedReader

ROW_PREFIX = "segments/"  # what a row's path has before the name (it was the directory below ROOT)


class SegmentStoreError(OSError):
    """The segment storage could not do what was asked. The message names the storage and says what to do.

    An ``OSError``: it is an I/O failure of the store's storage, and the places that handled a failed disk
    (ingest's refusal, ``sht store``'s one-line exit) handle it the same way. ``retry``: whether asking again
    later can succeed. ``code``: ingest's refusal code for it: ``storage-unavailable`` (the storage cannot be
    reached or used now) or ``write-failed`` (it was reached and refused these bytes, e.g. their checksum).
    """

    def __init__(self, message: str, *, retry: bool = True, code: str = "storage-unavailable") -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.code = code

    def __str__(self) -> str:
        return self.message


class SegmentConflict(SegmentStoreError):
    """The storage already holds *other* bytes under this name (another store sharing the bucket wrote them, or
    one that died before indexing them): they are never replaced. ``stored_sha256``: theirs, hex."""

    def __init__(self, message: str, stored_sha256: str) -> None:
        super().__init__(message, retry=False, code="conflict")
        self.stored_sha256 = stored_sha256


@dataclass(frozen=True)
class StoredSegment:
    """One entry a listing found: a name below the storage, its size, and when it was written (µs)."""

    name: str
    size: int
    written_us: int


def segment_name(camera: str, start_us: int) -> str:
    """``CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``, in UTC, from validated parts only."""
    when = datetime.fromtimestamp(start_us / 1e6, tz=UTC)
    return f"{check_id(camera, 'camera id')}/{when.strftime('%Y-%m-%d')}/{when.strftime('%H')}/{int(start_us)}.mp4"


def row_path(name: str) -> str:
    """The index row's ``path`` for a segment name."""
    return ROW_PREFIX + name


def name_of(path: str) -> str | None:
    """The segment name of an index row's ``path``, or None when the path is not one the store writes
    (absolute, with ``..``, or outside ``segments/``): such a row's file is never touched."""
    if path.startswith(ROW_PREFIX):  # the paths the store writes, without building two paths a row (a day: 8,640)
        rest = path[len(ROW_PREFIX):]
        probe = f"/{rest}/"
        if rest and "//" not in probe and "/./" not in probe and "/../" not in probe:
            return rest
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or len(p.parts) < 2 or p.parts[0] != ROW_PREFIX.rstrip("/"):
        return None
    return PurePosixPath(*p.parts[1:]).as_posix()


class SegmentStore(Protocol):
    """What the store needs of the place its segments live. Names: see ``segment_name``."""

    @property
    def description(self) -> str:
        """Where the segments are, for messages and /health (a directory, or ``s3://bucket/prefix at URL``)."""
        ...

    @property
    def disk_path(self) -> Path | None:
        """A path on the local file system that holds the segments, for free-space checks and the min-free
        rule; None when they are not on a local disk (S3: freeing space there frees nothing here)."""
        ...

    async def start(self) -> None:
        """Check the storage can be used (S3: the endpoint answers, the credentials and the bucket are good);
        ``SegmentStoreError`` with a one-line reason if not."""
        ...

    async def close(self) -> None: ...

    async def remove_temporaries(self) -> list[str]:
        """Delete what a crash left half-written (only files have such); returns what went."""
        ...

    async def put(self, name: str, data: memoryview | bytes, sha256_hex: str) -> None:
        """Store ``data`` under ``name`` durably, its SHA-256 (already checked by the caller) verified by the
        storage where it can; when this returns, a crash or power cut keeps it. Raises ``OSError``
        (``SegmentStoreError`` for remote storage) when it could not. Shared storage (S3) never replaces an
        object with other bytes: ``SegmentConflict``; the same bytes already there count as stored."""
        ...

    async def exists(self, name: str) -> bool: ...

    def open_local(self, name: str) -> AbstractContextManager[Path]:
        """Blocking (worker threads only, never the event loop): a local file with the segment's bytes for
        as long as the block runs. ``FileNotFoundError`` if there is no such segment."""
        ...

    def open_media(self, name: str) -> AbstractContextManager[Path | RangedReader]:
        """Blocking (worker threads only): what ``av.open`` reads the segment from for as long as the block runs:
        its file (files), or a seekable reader fetching the ranges read (S3). ``FileNotFoundError`` if there is
        no such segment (files: when it is opened)."""
        ...

    async def delete_many(self, names: list[str]) -> int:
        """Delete these segments (a missing one is fine); returns how many could not be, each logged."""
        ...

    async def sync_deleted(self, hours: list[str]) -> None:
        """Make the deletions in these hours (``CAMERA/DAY/HOUR``) durable (files: fsync the directories)."""
        ...

    async def hours_between(self, camera: str, spans: list[tuple[int, int]]) -> dict[str, list[int]]:
        """The hours (``CAMERA/DAY/HOUR``) of one camera that hold segments and may hold start times in the
        spans ``[from_us, to_us]``, each with the indexes of the spans it touches."""
        ...

    async def starts_in_hour(self, hour: str) -> list[int]:
        """The start times of the segments in one hour (``CAMERA/DAY/HOUR``)."""
        ...

    def list_all(self) -> AsyncIterator[StoredSegment]:
        """Every entry below the storage (segments, and for files any temporaries or strays), in no order."""
        ...

    async def quarantine(self, name: str) -> str:
        """Move a segment out of the way (never deleted: it may be the only copy); returns where it went."""
        ...


def spans_hours(spans: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """Each span ``[from_us, to_us]`` as its first and last ``YYYY-MM-DD/HH`` (as ``segment_name`` names them)."""
    return [(_hour_key(lo), _hour_key(hi)) for lo, hi in spans]


def _hour_key(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1e6, tz=UTC).strftime("%Y-%m-%d/%H")


def owners_of(day: str, hour: str, keys: list[tuple[str, str]]) -> list[int]:
    """The indexes of the spans (``spans_hours``) that reach ``DAY/HOUR``."""
    return [k for k, (lo, hi) in enumerate(keys) if lo <= f"{day}/{hour}" <= hi]


def days_wanted(day: str, keys: list[tuple[str, str]]) -> bool:
    return any(lo[:10] <= day <= hi[:10] for lo, hi in keys)


def start_of(name: str) -> int | None:
    """The start time in a name's last part ``<start_us>.mp4``, or None for any other name."""
    stem = name.rpartition("/")[2].removesuffix(".mp4")
    return int(stem) if name.endswith(".mp4") and stem.isascii() and stem.isdigit() else None
