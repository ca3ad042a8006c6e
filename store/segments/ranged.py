"""Ranged reads of one S3 object: a blocking, seekable, read-only file object that PyAV opens (``av.open(reader)``),
fetching only the blocks it reads, and the small in-memory block cache a store's readers share.

Why: a thumbnail needs a fraction of a segment. The node's MP4s are ``ftyp``, ``free``, ``mdat`` (the frames),
then ``moov`` (the index, ~1-2 KiB, written when the segment closes; no faststart). Opening one reads the first
32 KiB (the probe, the ``mdat`` header), the ``moov`` at the end, and the first keyframe (FFmpeg's stream probe
decodes it); the thumbnail then reads the GOP before its moment. With 256 KiB blocks that is 2-4 blocks of a 7-23
block 10 s segment (docs/cluster.md, "Segments on S3", has the measured share). An export of a short range reads
the GOPs it copies.

- Blocks are ``BLOCK_BYTES`` aligned; a miss fetches the missing blocks the read spans in one GET
  (``Range: bytes=a-b``). While a reader goes forward (each miss right after its last read) the GETs grow
  1, 1, 2, 4 up to ``MAX_RUN_BLOCKS`` blocks, so a reader that walks an object pays few round trips, and one that
  reads a GOP across two blocks (a thumbnail) fetches no block it does not read.
- ``prefetch(first, end)``: a caller that knows which bytes it will read next (a thumbnail, from the MP4's index:
  the keyframe at or before its moment up to the frame itself) has the missing blocks of that span fetched in one
  round trip, one GET per run of missing blocks, all at once; a GOP across two blocks then costs one GET, not two
  after each other. FFmpeg fills its 32 KiB buffer past the last packet it needs: a read from inside the span
  that runs into a block past its end that is not cached returns the bytes up to that block, rather than GET a
  block that is not needed (FFmpeg's buffer takes a short fill; it reads on if it needs more, which is then an
  ordinary miss).
- Otherwise a read returns all the bytes asked for (up to the end of the object) or raises, and never returns
  nothing before the end: FFmpeg would take that for the end of the file, and a truncated packet.
- Objects are never overwritten, but retention can delete one under a reader (and a new one can follow under the
  same name): every block carries the ETag it came with, and a block whose ETag differs from the reader's first,
  or a 404 after the first block, is ``SegmentChanged``. A failed read raises once; later reads return nothing
  (FFmpeg retries a failed read, and PyAV prints every exception a retry replaces) and ``check()`` raises the
  failure again: ``store.media.source.open_input`` calls it, so the caller gets the error even where FFmpeg
  swallowed the failed read and went on with fewer frames.

Blocking and thread-safe (the cache); one reader is used by one thread at a time.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from store.segments import SegmentStoreError

BLOCK_BYTES = 256 * 1024
DEFAULT_BLOCK_CACHE_BYTES = 64 * 1024 * 1024  # 256 blocks: the heads, indexes and GOPs of a few dozen segments
MAX_RUN_BLOCKS = 8  # the largest GET a forward-going reader makes: 2 MiB


class SegmentChanged(SegmentStoreError):
    """The object changed or went away while it was being read (retention deleted it, or it was replaced)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=True)


@dataclass(frozen=True)
class RangeReply:
    """What one ranged GET gave: ``data`` from offset ``first``, the object's ``size`` and ``etag``."""

    data: bytes
    first: int
    size: int
    etag: str

    @classmethod
    def parse(cls, data: bytes, content_range: str | None, etag: str) -> RangeReply:
        """From the reply's ``Content-Range: bytes A-B/SIZE``; none means the server sent the whole object."""
        if not content_range:
            return cls(data, 0, len(data), etag)
        unit, _, spec = content_range.partition(" ")
        span, _, total = spec.partition("/")
        first = span.partition("-")[0]
        if unit != "bytes" or not first.isdigit() or not total.isdigit():
            raise SegmentStoreError(f"the S3 server answered a ranged GET with Content-Range {content_range!r}, "
                                    "not bytes A-B/SIZE", retry=False)
        return cls(data, int(first), int(total), etag)


# HTTP Range values ("bytes=A-B", "bytes=-N" for the last N) -> what each GET gave, the GETs made at once;
# FileNotFoundError when there is no such object.
FetchRanges = Callable[[list[str]], list[RangeReply]]


@dataclass(frozen=True)
class _Block:
    data: bytes
    size: int  # of the whole object
    etag: str


class BlockCache:
    """Blocks of objects in memory, keyed by (name, block number), bounded by bytes, least recently used evicted
    first. Shared by a store's readers; ``forget`` drops a deleted object's blocks."""

    def __init__(self, max_bytes: int = DEFAULT_BLOCK_CACHE_BYTES, block_bytes: int = BLOCK_BYTES) -> None:
        if block_bytes <= 0:
            raise ValueError(f"block size must be positive, got {block_bytes}")
        self.max_bytes = max_bytes
        self.block_bytes = block_bytes
        self._lock = threading.Lock()
        self._blocks: OrderedDict[tuple[str, int], _Block] = OrderedDict()
        self._numbers: dict[str, set[int]] = {}  # name -> its cached block numbers, for forget
        self.bytes = 0
        self.hits = 0
        self.gets = 0  # ranged GETs made
        self.rounds = 0  # round trips: GETs made one after another (a cold open's two GETs at once are one)
        self.fetched_bytes = 0  # bytes those GETs brought

    def get(self, name: str, number: int) -> _Block | None:
        with self._lock:
            block = self._blocks.get((name, number))
            if block is not None:
                self._blocks.move_to_end((name, number))
                self.hits += 1
            return block

    def has(self, name: str, number: int, touch: bool = False) -> bool:
        """Whether the block is cached; ``touch``: and make it the most recently used (it is about to be read)."""
        with self._lock:
            if (name, number) not in self._blocks:
                return False
            if touch:
                self._blocks.move_to_end((name, number))
            return True

    def round_trip(self) -> None:
        with self._lock:
            self.rounds += 1

    def counted(self, reply: RangeReply) -> None:
        with self._lock:
            self.gets += 1
            self.fetched_bytes += len(reply.data)

    def put(self, name: str, number: int, block: _Block) -> None:
        with self._lock:
            old = self._blocks.pop((name, number), None)
            self.bytes += len(block.data) - (len(old.data) if old else 0)
            self._blocks[(name, number)] = block
            self._numbers.setdefault(name, set()).add(number)
            while self.bytes > self.max_bytes and self._blocks:
                (old_name, old_number), evicted = self._blocks.popitem(last=False)
                self.bytes -= len(evicted.data)
                self._discard_number(old_name, old_number)

    def forget(self, names: Iterable[str]) -> None:
        """Drop every block of these objects (deleted, or found changed)."""
        with self._lock:
            for name in names:
                for number in self._numbers.pop(name, ()):
                    self.bytes -= len(self._blocks.pop((name, number)).data)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._numbers.clear()
            self.bytes = 0

    def _discard_number(self, name: str, number: int) -> None:
        numbers = self._numbers.get(name)
        if numbers is not None:
            numbers.discard(number)
            if not numbers:
                del self._numbers[name]


class RangedReader(io.RawIOBase):
    """One object, read in blocks through ``cache``; ``fetch`` makes the GETs. Opening it reads block 0 (every
    reader of an MP4 starts there), so a missing object is ``FileNotFoundError`` here, as ``open_local`` says it,
    and the object's size and ETag are known from the start. Cold (block 0 not cached), it GETs the last
    ``BLOCK_BYTES`` at the same time (``bytes=-N``): FFmpeg reads the moov there next, and one round trip for both
    costs what one costs, for at most a block's bytes before the last block that are not kept."""

    prefetch_tail = True  # the last block with block 0 when cold (bench/ranged_reads.py measures without too)

    def __init__(self, name: str, label: str, fetch: FetchRanges, cache: BlockCache) -> None:
        super().__init__()
        self.object_name = name
        self.label = label  # for messages: s3://bucket/key
        self._fetch = fetch
        self._cache = cache
        self._block_bytes = cache.block_bytes
        self._pos = 0
        self._failure: SegmentStoreError | None = None
        self._run = 1  # blocks the last miss fetched
        self._streak = 0  # forward misses since the last jump
        self._last_read_block = -2  # the last block the previous read touched
        self._wanted_end = 0  # the end of the span last prefetched: the bytes the caller said it reads
        first = cache.get(name, 0)
        if first is None:
            first = self._open_cold()
        self._etag = first.etag
        self.size = first.size

    def __repr__(self) -> str:
        return self.label

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()  # type: ignore[attr-defined]  # io.IOBase's own check, not in the stubs
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()  # type: ignore[attr-defined]
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._checkClosed()  # type: ignore[attr-defined]
        if self._failure is not None:
            return 0  # raised once already; check() raises it again
        out = memoryview(buffer).cast("B")
        n = min(len(out), max(0, self.size - self._pos))
        if n == 0:
            return 0
        size = self._block_bytes
        first, last = self._pos // size, (self._pos + n - 1) // size
        if self._pos < self._wanted_end:  # a buffer fill past the prefetched bytes stops before a block not needed
            past = next((b for b in range(first + 1, last + 1)
                         if b * size >= self._wanted_end and not self._cache.has(self.object_name, b)), None)
            if past is not None:
                last, n = past - 1, past * size - self._pos
        forward = first in (self._last_read_block, self._last_read_block + 1)
        done = 0
        for number in range(first, last + 1):
            block = self._block(number, last, forward)  # whole: checked when it was fetched
            start = self._pos + done - number * size
            take = min(n - done, len(block.data) - start)
            out[done:done + take] = block.data[start:start + take]
            done += take
        self._pos += n
        self._last_read_block = last
        return n

    def prefetch(self, first: int, end: int) -> None:
        """Fetch the blocks holding bytes ``first..end-1`` that are not cached, in one round trip: a GET per run of
        missing blocks, all at once. For a caller that knows what it reads next (the reads then hit the cache, and
        one running from inside the span into a block past ``end`` that is not cached stops before it); a failure
        is raised here, and as a read's would be, by ``check()`` again."""
        self._checkClosed()  # type: ignore[attr-defined]
        end = min(end, self.size)
        if self._failure is not None or first >= end:
            return
        self._wanted_end = end
        size = self._block_bytes
        runs: list[tuple[int, int]] = []
        for number in range(max(0, first) // size, (end - 1) // size + 1):
            if self._cache.has(self.object_name, number, touch=True):  # not evicted by the blocks fetched now
                continue
            if runs and runs[-1][1] == number - 1:
                runs[-1] = (runs[-1][0], number)
            else:
                runs.append((number, number))
        if runs:
            self._fetch_runs(runs)

    @property
    def failed(self) -> SegmentStoreError | None:
        """The failure a read met, if any."""
        return self._failure

    def check(self) -> None:
        """Raise the failure a read met, if any (FFmpeg may have swallowed it and gone on: call this after)."""
        if self._failure is not None:
            raise self._failure

    def _block(self, number: int, last: int, forward: bool) -> _Block:
        block = self._cache.get(self.object_name, number)
        if block is None:
            # A forward-going reader gets longer GETs from its second forward miss on; a jump (the moov, a seek)
            # starts again at 1.
            self._streak = self._streak + 1 if forward else 0
            self._run = min(self._run * 2, MAX_RUN_BLOCKS) if self._streak > 1 else 1
            end = min(max(last, number + self._run - 1), (self.size - 1) // self._block_bytes)
            stop = number
            while stop < end and not self._cache.has(self.object_name, stop + 1):
                stop += 1
            block = self._fetch_blocks(number, stop)
        if block.etag != self._etag:
            self._cache.forget([self.object_name])  # whichever is stale, the next reader starts afresh
            raise self._fail(SegmentChanged(
                f"{self.label} changed while it was being read (ETag {self._etag}, now {block.etag}): it was "
                "deleted and written again; ask again"))
        return block

    def _open_cold(self) -> _Block:
        """Block 0 and the last block, in two GETs at once; FileNotFoundError if there is no object."""
        size = self._block_bytes
        self._cache.round_trip()
        head, *tail = self._fetch([f"bytes=0-{size - 1}"] + ([f"bytes=-{size}"] if self.prefetch_tail else []))
        for reply in (head, *tail):
            self._cache.counted(reply)
            if reply.etag != head.etag:
                raise SegmentChanged(f"{self.label} changed while it was being opened (ETag {head.etag}, then "
                                     f"{reply.etag}); ask again")
        self._etag = head.etag
        first = self._keep(head, 0, 0)
        last = (head.size - 1) // size
        if tail and last > 0 and tail[0].first <= last * size:  # the last block is whole in it (not block 0)
            self._keep(tail[0], last, last)
        return first

    def _fetch_blocks(self, first: int, last: int) -> _Block:
        """GET blocks ``first..last`` in one request, cache them, return the first."""
        return self._fetch_runs([(first, last)])[0]

    def _fetch_runs(self, runs: list[tuple[int, int]]) -> list[_Block]:
        """GET each run of blocks ``(first, last)`` in one request, the requests at once; cache the blocks, return
        each run's first."""
        size = self._block_bytes
        self._cache.round_trip()
        try:
            replies = self._fetch([f"bytes={first * size}-{(last + 1) * size - 1}" for first, last in runs])
        except FileNotFoundError as exc:
            self._cache.forget([self.object_name])
            raise self._fail(SegmentChanged(
                f"{self.label} was deleted while it was being read (retention removes old footage); ask again, "
                "for footage that is still kept")) from exc
        except SegmentStoreError as exc:
            raise self._fail(exc) from exc
        for reply in replies:
            self._cache.counted(reply)
        for reply in replies:
            if reply.etag != self._etag:
                self._cache.forget([self.object_name])
                raise self._fail(SegmentChanged(
                    f"{self.label} changed while it was being read (ETag {self._etag}, now {reply.etag}): it was "
                    "deleted and written again; ask again"))
        return [self._keep(reply, first, last) for reply, (first, last) in zip(replies, runs, strict=True)]

    def _keep(self, reply: RangeReply, first: int, last: int) -> _Block:
        """Blocks ``first..last`` cut from a reply and cached; the first returned."""
        size = self._block_bytes
        blocks = []
        for number in range(first, last + 1):
            offset = number * size - reply.first
            data = reply.data[offset:offset + size] if offset >= 0 else b""
            expected = max(0, min(size, reply.size - number * size))
            if len(data) != expected:  # a block is whole (or the object's tail), or it is not kept
                raise self._fail(SegmentStoreError(
                    f"{self.label}: asked for block {number} of {reply.size} bytes, the S3 server sent "
                    f"{len(reply.data)} from {reply.first}; ask again"))
            block = _Block(data, reply.size, reply.etag)
            self._cache.put(self.object_name, number, block)
            blocks.append(block)
        return blocks[0]

    def _fail(self, exc: SegmentStoreError) -> SegmentStoreError:
        self._failure = exc
        return exc
