"""Taking in a segment: verify, write durably, index, and only then acknowledge.

Order (docs/storage.md): store the bytes durably (the file backend: a temporary name → fsync → rename → fsync
the directory; S3: a PUT the server verified against the SHA-256) → insert the index row → commit → ack. The row
carries the segment's shape, read from the payload's own sample table (store/index/shapes.py); a table that cannot
be read leaves it NULL, never the segment refused. A
crash anywhere before the commit leaves at most an unindexed segment or a temporary, never a row without its
complete segment. On an index several stores share, the row's transaction also holds the segment hour's fence and
confirms the segment is still stored (store/index/fence.py): another store's retention cannot delete it under us.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import av

from shared.clock import now_us
from shared.ids import check_id
from shared.protocol.ingest import Ack, Refusal, SegmentHeader, sha256_hex
from store.index import fence
from store.index.db import Index
from store.index.location import IndexUnavailable
from store.index.shapes import shape_of_bytes
from store.segments import SegmentConflict, SegmentStore, SegmentStoreError, segment_name
from store.segments.files import FileSegments

if TYPE_CHECKING:
    from store.playback.segment_shape import SegmentShape

log = logging.getLogger(__name__)
MIN_FREE_BYTES = 64 * 1024 * 1024  # refuse ingest rather than fill the disk to the last byte
# A row waits this long while a store sharing the index deletes segments of its hour (store/index/fence.py), trying
# every FENCE_RETRY_S; then the node is told to resend (its ack times out at 30 s, and the PUT came first).
FENCE_WAIT_S = 10.0
FENCE_RETRY_S = 0.05


def _fault_pause_after_put() -> float:
    """``SHT_FAULT_PAUSE_AFTER_PUT=SECONDS``, a test aid (docs/reliability.md): ingest waits that long between
    storing a segment and indexing it, so a test can kill the store in that window. Read once; it only pauses."""
    text = os.environ.get("SHT_FAULT_PAUSE_AFTER_PUT", "").strip()
    try:
        seconds = float(text or 0)
    except ValueError:
        raise ValueError(f"SHT_FAULT_PAUSE_AFTER_PUT={text!r} is not a number of seconds; unset it") from None
    return max(0.0, seconds)


FAULT_PAUSE_AFTER_PUT_S = _fault_pause_after_put()


def segment_relpath(camera: str, start_us: int) -> Path:
    """``segments/CAMERA/YYYY-MM-DD/HH/<start_us>.mp4``, in UTC, from validated parts only: the index row's
    ``path`` (``store.segments.row_path`` of ``segment_name``), whatever the segment storage."""
    when = datetime.fromtimestamp(start_us / 1e6, tz=UTC)
    return (Path("segments") / check_id(camera, "camera id") / when.strftime("%Y-%m-%d")
            / when.strftime("%H") / f"{int(start_us)}.mp4")


@dataclass
class IngestStats:
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    bytes_stored: int = 0


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class IngestHooks(Protocol):
    """Who wants to hear about ingest: store/maintenance/retention.py ``RetentionTask`` (totals, low disk)."""

    def note_ingested(self, size: int) -> None: ...
    def note_free_bytes(self, free: int) -> None: ...


class Ingestor:
    def __init__(self, root: Path, index: Index, hooks: IngestHooks | None = None, *,
                 segments: SegmentStore | None = None) -> None:
        """``segments``: where the bytes go (default: files under ROOT/segments)."""
        self.root = root
        self.index = index
        self.hooks = hooks
        self.segments: SegmentStore = segments if segments is not None else FileSegments(root)
        self.stats = IngestStats()
        self._segment_locks = KeyedLocks()

    @property
    def segment_locks(self) -> KeyedLocks:
        """Held per segment id while ingesting; retention holds them while deleting."""
        return self._segment_locks

    async def ingest(self, header: SegmentHeader, payload: memoryview) -> Ack | Refusal:
        # One segment identity at a time: a resend racing the original on another
        # connection must see its row, not overwrite its file.
        async with self._segment_locks.hold(header.segment_id):
            return await self._ingest(header, payload)

    async def _ingest(self, header: SegmentHeader, payload: memoryview) -> Ack | Refusal:
        sid = header.segment_id
        try:
            existing = await self.index.find_segment(header.camera, header.start_us)
        except IndexUnavailable as exc:
            return self._index_unavailable(sid, exc)
        if existing is not None:
            return self._resent(header, existing.sha256)
        digest = await _in_ingest_pool(sha256_hex, payload)
        if digest != header.sha256:
            self.stats.refused += 1
            return Refusal("checksum-mismatch", f"segment {sid}: SHA-256 of the bytes is {digest}, "
                           f"the header says {header.sha256}; the node should resend it", sid,
                           retry=True)
        problem = await _in_ingest_pool(mp4_problem, payload, header)
        if problem is not None:
            self.stats.refused += 1
            return Refusal("bad-media", f"segment {sid} is not a valid segment: {problem}; not stored", sid,
                           retry=False)
        # What /recordings lays out from the row (store/playback/segment_shape.py); None: NULL, filled by playback.
        shape = await _in_ingest_pool(shape_of_bytes, payload, sid)
        relpath = segment_relpath(header.camera, header.start_us)
        disk = self.segments.disk_path  # None: not on a local disk (S3), nothing here fills up
        if disk is not None:
            free = await _in_ingest_pool(_free_bytes, disk)
            if self.hooks is not None:
                self.hooks.note_free_bytes(free)  # under retention's min-free: sweep now, not in a minute
            if free - len(payload) < MIN_FREE_BYTES:
                self.stats.refused += 1
                return Refusal("disk-full", f"store disk at {disk} has {free} bytes free, below "
                               f"the {MIN_FREE_BYTES}-byte floor; free space or lower retention. "
                               "The node keeps the segment and retries.", sid, retry=True)
        name = segment_name(header.camera, header.start_us)
        refused = await self._store(header, name, relpath, payload)
        if refused is not None:
            return refused
        if FAULT_PAUSE_AFTER_PUT_S:
            log.warning("SHT_FAULT_PAUSE_AFTER_PUT: %s is stored, not indexed; pausing %.1f s (a test aid)", relpath,
                        FAULT_PAUSE_AFTER_PUT_S)
            await asyncio.sleep(FAULT_PAUSE_AFTER_PUT_S)
        return await self._index_stored(header, name, relpath, payload, shape)

    async def _store(self, header: SegmentHeader, name: str, relpath: Path,
                     payload: memoryview) -> Ack | Refusal | None:
        """Store the bytes durably (for S3 verified by the server) under ``name``; None when they are, else the
        answer to give."""
        sid = header.segment_id
        try:
            await self.segments.put(name, payload, header.sha256)
        except SegmentConflict as exc:
            return await self._other_bytes_stored(header, exc)
        except SegmentStoreError as exc:
            return self._storage_refusal(sid, relpath, exc)
        except OSError as exc:
            self.stats.refused += 1
            log.error("could not write %s: %s", relpath, exc)
            return Refusal("write-failed", f"store could not write {relpath}: {exc.strerror or exc}",
                           sid, retry=True)
        return None

    async def _index_stored(self, header: SegmentHeader, name: str, relpath: Path,
                            payload: memoryview, shape: SegmentShape | None = None) -> Ack | Refusal:
        """Write the row of a stored segment, then acknowledge it.

        On an index shared with other stores the row's transaction holds the segment hour's fence and confirms
        that the object is still there (store/index/fence.py): another store's retention may have deleted it since
        our PUT (a resend of footage whose row retention removed, its object not yet collected). Then the bytes,
        still in hand, are stored again and the row tried again. While a store is deleting segments of that hour
        the row waits, up to ``FENCE_WAIT_S``."""
        sid = header.segment_id
        loop = asyncio.get_running_loop()
        give_up = loop.time() + FENCE_WAIT_S
        confirm = partial(fence.confirm_for_ingest, name=name, still_stored=partial(self.segments.exists, name))
        while True:
            try:
                await self.index.insert_segment(header, str(relpath), now_us(), before_insert=confirm, shape=shape)
                break
            except IndexUnavailable as exc:
                # The segment is stored but not indexed: the resend finds no row and writes it again (the same
                # bytes, the same name); check --repair indexes it if the node never comes back.
                return self._index_unavailable(sid, exc)
            except SegmentStoreError as exc:  # asking whether the object is still there failed
                return self._storage_refusal(sid, relpath, exc)
            except (fence.FenceBusy, fence.SegmentGone) as exc:
                if loop.time() >= give_up:
                    self.stats.refused += 1
                    log.warning("segment %s: %s; refused for now after %.0f s", sid, exc, FENCE_WAIT_S)
                    return Refusal("busy", f"segment {sid}: {exc}; the node keeps it and resends it", sid,
                                   retry=True)
                if isinstance(exc, fence.SegmentGone):
                    log.warning("segment %s: %s; storing it again before indexing it", sid, exc)
                    refused = await self._store(header, name, relpath, payload)
                    if refused is not None:
                        return refused
                else:
                    await asyncio.sleep(FENCE_RETRY_S)
            except Exception:
                # Another store sharing the index took the same segment at the same moment: UNIQUE (camera,
                # start_us) kept one row, theirs. The same bytes are a duplicate, other bytes a conflict.
                existing = await self.index.find_segment(header.camera, header.start_us)
                if existing is None:
                    raise
                return self._resent(header, existing.sha256)
        if self.hooks is not None:
            self.hooks.note_ingested(header.bytes)
        self.stats.stored += 1
        self.stats.bytes_stored += header.bytes
        return Ack(sid)

    def _storage_refusal(self, sid: str, relpath: Path, exc: SegmentStoreError) -> Refusal:
        self.stats.refused += 1
        log.error("could not store %s: %s", relpath, exc)
        return Refusal(exc.code, f"store could not store segment {sid}: {exc}. The node keeps it and resends it.",
                       sid, retry=True)

    async def _other_bytes_stored(self, header: SegmentHeader, exc: SegmentConflict) -> Ack | Refusal:
        """A shared bucket already holds other bytes under this segment's name (another store wrote them, and may
        be committing their row now): they stay. Their row, if there is one, answers as for a resend; without one
        it is still a conflict, kept by the node for a human (``sht store check`` reports the object)."""
        try:
            existing = await self.index.find_segment(header.camera, header.start_us)
        except IndexUnavailable as unavailable:
            return self._index_unavailable(header.segment_id, unavailable)
        if existing is not None:
            return self._resent(header, existing.sha256)
        self.stats.refused += 1
        log.error("segment %s: %s", header.segment_id, exc)
        return Refusal("conflict", f"segment {header.segment_id}: {exc}; no index row names it yet. Not replacing "
                       "it; `sht store check` reports the object", header.segment_id, retry=False)

    def _index_unavailable(self, sid: str, exc: IndexUnavailable) -> Refusal:
        self.stats.refused += 1
        log.error("cannot index segment %s: %s", sid, exc)
        return Refusal("index-unavailable", f"store cannot reach its index to record segment {sid}: {exc}. The "
                       "node keeps it and resends it.", sid, retry=True)

    def _resent(self, header: SegmentHeader, stored_sha: str) -> Ack | Refusal:
        if stored_sha == header.sha256:
            self.stats.duplicates += 1
            return Ack(header.segment_id, duplicate=True)
        self.stats.refused += 1
        return Refusal("conflict", f"segment {header.segment_id} is already stored with different "
                       "content; not replacing it", header.segment_id, retry=False)


def mp4_problem(payload: memoryview | bytes, header: SegmentHeader) -> str | None:
    """Why the bytes are not the MP4 the header describes, or None. Demuxes only (~1 ms), never decodes."""
    try:
        with av.open(io.BytesIO(payload), mode="r", format="mp4") as container:
            videos = container.streams.video
            if len(container.streams) != 1 or len(videos) != 1:
                return f"expected exactly one video stream, found {len(container.streams)} streams"
            stream = videos[0]
            if stream.codec_context.name != header.codec:
                return f"its video is {stream.codec_context.name}, the header says {header.codec}"
            if header.width and (stream.codec_context.width, stream.codec_context.height) != (header.width,
                                                                                                header.height):
                return (f"its frames are {stream.codec_context.width}x{stream.codec_context.height}, the header "
                        f"says {header.width}x{header.height}")
            packets = sum(1 for packet in container.demux(stream) if packet.size > 0)
    except (av.FFmpegError, ValueError, OSError) as exc:
        return f"not a readable MP4 ({exc})"
    if packets != header.frames:
        return f"it holds {packets} frames, the header says {header.frames}"
    return None


# Ingest's own threads: thumbnails and clip exports use the default pool, and a viewer exporting
# footage must not make the nodes' uploads wait for a thread (their acks time out at 30 s).
_INGEST_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest")
T = TypeVar("T")


async def _in_ingest_pool(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_INGEST_POOL, partial(fn, *args))


def _free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free
