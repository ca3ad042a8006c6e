"""Ships the spool to the store, oldest first, deleting each item only after its ack.

A thin asyncio shell around ``shared.protocol.ingest.IngestSender``. One item is
in flight at a time: the store's ack means durable and indexed, so the spool
never forgets anything the store does not hold. The one exception is the spool
limit: when the backlog outgrows it, the oldest unsent segments are dropped,
and each drop is counted, logged and reported to the store as a ``loss`` event.

Open events (a motion event sent at its start, ``EventRecord.open``) jump the queue: they go right behind
the item in flight, since the store starts object detection on them. Only a store whose handshake says it
takes them (``X-Sht-Ingest: 3`` or more) gets them; for an older one they are dropped unsent (it would keep
the open event as the whole event and refuse the closed one as a duplicate); the closed event still goes.
A ``camera-stalled`` event (a camera that stopped delivering, open at the stall and closed when frames come
again) goes as itself to a store that takes it (``X-Sht-Ingest: 4``); an older store gets the closed one as a
``loss`` saying so, and not the open one, which it would refuse.

Several stores (``--store ws://A:8100,ws://B:8100``, docs/cluster.md): the link is on the first that answers
and stays there while it works. When it fails (refused, closed, a retry answer, no ack in ``ACK_TIMEOUT_S``),
``shared.store_list.StoreRotation`` names the next store and the link is there at once; the item that was in
flight is still first in the queue (it leaves the spool only on an ack), so it is sent again, to the new store.
The link stays open while idle, so a store that dies is left before the next segment is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter, deque
from dataclasses import replace

import websockets
from websockets.asyncio.client import ClientConnection, connect

from node.recording.spool import Spool, SpooledEvent, SpooledItem, SpooledSegment
from shared.clock import now_us
from shared.protocol.errors import ProtocolError
from shared.protocol.health import SpoolHealth
from shared.protocol.ingest import (
    INGEST_VERSION_HEADER,
    MAX_FRAGMENT_BYTES,
    MAX_SEGMENT_BYTES,
    OPEN_EVENTS_VERSION,
    STALL_EVENTS_VERSION,
    Ack,
    EventRecord,
    IngestSender,
    fragments,
    sha256_hex,
)
from shared.store_list import StoreRotation, is_tls, parse_store_list
from shared.urls import ws_url

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30.0


class Uploader:
    """``store_url``: one store or several (``ws://A:8100,ws://B:8100``); with several, ``rotation`` (shared with
    the control link) says which one to use, and a store that fails is left for the next at once."""

    def __init__(self, store_url: str | None, spool: Spool, node_id: str, limit_bytes: int,
                 headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None,
                 rotation: StoreRotation | None = None) -> None:
        self.rotation = rotation or (StoreRotation(parse_store_list(store_url)) if store_url else None)
        self.store: str | None = self.rotation.current if self.rotation else None  # the store of the link now
        self.headers, self.ssl_context = headers or {}, ssl_context
        self.spool = spool
        self.node_id = node_id
        self.limit_bytes = limit_bytes
        self.pending: deque[SpooledItem] = deque()
        self.pending_bytes = 0
        self._in_flight: SpooledItem | None = None
        self._wake = asyncio.Event()
        self.link = "disconnected" if store_url else "not configured"
        self.last_error: str | None = None
        self.uploaded = 0
        self.rejected = 0
        self.resent = 0  # items that were in flight to a store that failed, sent again (to the next store)
        self.failures = 0  # connections to a store that failed, all stores
        self._retry = asyncio.Event()  # set: try the stores now, whatever their backoff says
        self.lost_segments: Counter[str] = Counter()  # camera -> segments dropped or never spooled
        self.lost_frames: Counter[str] = Counter()
        self.lost_bytes = 0
        self.store_version: int | None = None  # the connected store's /ingest version (2: before it said)
        self.open_events_dropped = 0  # open events an older store could not take
        self._said_old_store = False

    @property
    def url(self) -> str | None:
        """The /ingest URL of the store the link is on (or tries next)."""
        return ws_url(self.store) + "/ingest" if self.store else None

    def add(self, item: SpooledItem) -> None:
        if _is_open(item):
            # Right behind the item in flight and the open events already waiting: they are tiny and late
            # ones are worth little.
            at = 1 if self.pending and self.pending[0] is self._in_flight else 0
            while at < len(self.pending) and _is_open(self.pending[at]):
                at += 1
            self.pending.insert(at, item)
        else:
            self.pending.append(item)
        self.pending_bytes += item.size
        self._wake.set()

    async def add_and_enforce(self, item: SpooledSegment) -> None:
        """Queue a freshly spooled segment, then keep the backlog within the spool limit."""
        self.add(item)
        while self.pending_bytes > self.limit_bytes:
            victim = next((i for i in self.pending if isinstance(i, SpooledSegment) and i is not self._in_flight),
                          None)
            if victim is None or victim is item:
                break  # nothing older to drop: keep the newest footage even above the limit
            self.pending.remove(victim)
            self.pending_bytes -= victim.size
            await asyncio.to_thread(self.spool.remove, victim)
            h = victim.header
            self.lost_bytes += h.bytes
            log.error("spool full (%d bytes over its %d-byte limit): DROPPED unsent segment %s (%d frames, "
                      "%.1f s) to make room", self.pending_bytes + h.bytes - self.limit_bytes, self.limit_bytes,
                      h.segment_id, h.frames, (h.end_us - h.start_us) / 1e6)
            await self.report_loss(h.camera, h.start_us, h.end_us, h.frames,
                                   f"spool full ({self.limit_bytes} bytes): unsent segment dropped")

    async def report_loss(self, camera: str, start_us: int, end_us: int, frames: int, why: str) -> None:
        """Count a loss and queue a ``loss`` event for the store (spooled, so it survives restarts)."""
        self.lost_segments[camera] += 1
        self.lost_frames[camera] += frames
        record = EventRecord(self.node_id, camera, start_us, max(start_us, end_us), "loss", 0.0,
                             thumb_us=None, detail=f"{frames} frames: {why}")
        try:
            self.add(await asyncio.to_thread(self.spool.put_event, record))
        except OSError as exc:
            log.error("could not spool the loss event for %s: %s (the loss is still counted in /health)",
                      record.record_id, exc)

    async def report_stall(self, camera: str, start_us: int, end_us: int | None, why: str) -> None:
        """Queue a ``camera-stalled`` event: open while the camera gives no frames (``end_us`` None), closed
        with the gap's end once it does (spooled, so it survives restarts)."""
        end = start_us if end_us is None else max(start_us, end_us)
        record = EventRecord(self.node_id, camera, start_us, end, "camera-stalled", 0.0, thumb_us=None,
                             detail=why[:500], open=end_us is None)
        try:
            self.add(await asyncio.to_thread(self.spool.put_event, record))
        except OSError as exc:
            log.error("could not spool the stall event for %s: %s (the stall is still in /health)",
                      record.record_id, exc)

    def backlog(self) -> SpoolHealth:
        oldest = min((i.start_us for i in self.pending if isinstance(i, SpooledSegment)), default=None)
        return SpoolHealth(segments=sum(isinstance(i, SpooledSegment) for i in self.pending),
                           events=sum(isinstance(i, SpooledEvent) for i in self.pending),
                           bytes=self.pending_bytes, limit_bytes=self.limit_bytes,
                           oldest_start_us=oldest,
                           # Stamps are the camera's clock (docs/time.md), which may run ahead of the wall
                           # clock after a backward step: an age is never negative.
                           oldest_age_s=round(max(0, now_us() - oldest) / 1e6, 1) if oldest else None,
                           lost_segments=sum(self.lost_segments.values()),
                           lost_frames=sum(self.lost_frames.values()),
                           lost_bytes=self.lost_bytes, lost_by_camera=dict(self.lost_segments))

    async def run(self) -> None:
        if self.rotation is None:
            return
        loop = asyncio.get_running_loop()
        while True:  # connected even while there is nothing to send: a store that goes away is left at once
            store, delay = self.rotation.choose(loop.time())
            if delay > 0:  # every store failed lately: the spool keeps everything meanwhile
                self._retry.clear()
                with contextlib.suppress(TimeoutError):  # or until a stop asks for one more try
                    await asyncio.wait_for(self._retry.wait(), delay)
                continue
            self.store = store
            try:
                async with connect(ws_url(store) + "/ingest", max_size=2**20, open_timeout=10, write_limit=2**20,
                                   additional_headers=self.headers,
                                   ssl=self.ssl_context if is_tls(store) else None) as ws:
                    # last_error and the store's backoff stay until an answer: a store that takes connections but
                    # refuses every item (its index or bucket away) is backed off like one that is down, not
                    # hammered a few times a second.
                    self.link = "connected"
                    self.store_version = _ingest_version(ws)
                    await self._drain(ws)
            except Exception as exc:  # network trouble, or a bug: the spool keeps everything; try again
                self.failures += 1
                self.last_error = f"{store}: {type(exc).__name__}: {exc}"
                self.rotation.failed(store, loop.time(), self.last_error)
                expected = isinstance(exc, (OSError, TimeoutError, websockets.WebSocketException, ProtocolError))
                next_store, delay = self.rotation.choose(loop.time())
                log.log(logging.WARNING if expected else logging.ERROR, "store link %s down (%s); %s",
                        store, self.last_error, f"trying {next_store} now" if delay == 0 and next_store != store
                        else f"retrying {next_store} in {delay:.1f} s", exc_info=not expected)
                if self._in_flight is not None:  # still first in the queue: it goes again, to the next store
                    self.resent += 1
                    log.info("%s was sent to %s without an ack: it is sent again, first", _name(self._in_flight),
                             store)
                self.link = "disconnected"
            finally:
                self._in_flight = None
                self.link = "disconnected"

    async def _drain(self, ws: ClientConnection) -> None:
        sender = IngestSender()
        while True:
            if not self.pending:
                self._wake.clear()
                await _work_or_close(self._wake, ws)
            item = self._in_flight = self.pending[0]
            if isinstance(item, SpooledEvent) and item.record.open and not self.takes_open_events:
                await self._drop_open_event(item)
                continue
            if isinstance(item, SpooledEvent):
                record = item.record
                if record.kind == "camera-stalled" and (self.store_version or 0) < STALL_EVENTS_VERSION:
                    if record.open:  # an older store would refuse the kind: it gets the closed one, as a loss
                        await asyncio.to_thread(self.spool.remove, item)
                        self._finish(item)
                        continue
                    record = replace(record, kind="loss", detail=f"camera stalled: {record.detail}"[:500])
                sender.send_event(record)
            else:
                try:
                    data = await asyncio.to_thread(_read_verified, item)
                except (OSError, ValueError) as exc:
                    # The spool copy is gone or damaged: resending it can never succeed.
                    log.error("spooled segment %s cannot be sent (%s); setting it aside",
                              item.header.segment_id, exc)
                    await self._set_aside(item, f"its spool copy cannot be sent: {exc}")
                    continue
                sender.send_segment(item.header, data)
            for message in sender.data_to_send():
                # In frames of at most MAX_FRAGMENT_BYTES: the store refuses larger frames (protocol v2)
                if isinstance(message, bytes) and len(message) > MAX_FRAGMENT_BYTES:
                    await ws.send(fragments(message))
                else:
                    await ws.send(message)
            reply = sender.receive(await asyncio.wait_for(ws.recv(), ACK_TIMEOUT_S))
            if isinstance(reply, Ack):
                await asyncio.to_thread(self.spool.remove, item)
                self._finish(item)
                self.uploaded += 1
            elif reply.retry:
                raise ProtocolError(reply.code, f"store asked to retry later: {reply.message}")
            else:
                log.error("store refused %s: %s (%s); setting it aside", _name(item), reply.message, reply.code)
                # A conflict means the store holds another version of it (e.g. the untrimmed one): not a loss.
                await self._set_aside(item, f"the store refused it: {reply.code}", lost=reply.code != "conflict")
            self._answered(item)

    def _answered(self, item: SpooledItem) -> None:
        """The store answered ``item`` for good (took it, or refused it not to be retried). It works again once
        it answers a segment, or everything there was to send: a connection alone does not say so, nor does an
        event's ack (a store whose bucket is away takes events and refuses every segment; open events, sent first,
        would otherwise start the backoff over and clear the error every few seconds)."""
        if isinstance(item, SpooledSegment) or not self.pending:
            assert self.rotation is not None and self.store is not None
            self.last_error = None
            self.rotation.succeeded(self.store)  # its backoff starts over

    @property
    def takes_open_events(self) -> bool:
        return (self.store_version or 0) >= OPEN_EVENTS_VERSION

    async def _drop_open_event(self, item: SpooledEvent) -> None:
        if not self._said_old_store:
            self._said_old_store = True
            log.info("store %s speaks ingest version %s, before open events (%d): motion events go to it when "
                     "they end, not when they start; upgrade the store for object detection to start at once",
                     self.url, self.store_version, OPEN_EVENTS_VERSION)
        await asyncio.to_thread(self.spool.remove, item)
        self._finish(item)
        self.open_events_dropped += 1

    def _finish(self, item: SpooledItem) -> None:
        self._in_flight = None
        if self.pending and self.pending[0] is item:
            self.pending.popleft()
            self.pending_bytes -= item.size

    async def _set_aside(self, item: SpooledItem, why: str, lost: bool = True) -> None:
        """Keep a refused item for a human to look at, out of the upload queue; the footage counts as lost."""
        self.rejected += 1
        self._finish(item)
        await asyncio.to_thread(_move_aside, self.spool, item)
        if lost and isinstance(item, SpooledSegment):
            h = item.header
            await self.report_loss(h.camera, h.start_us, h.end_us, h.frames, f"{why} (kept in .refused/)")

    async def drain(self, seconds: float) -> bool:
        """Wait until everything pending is uploaded, or ``seconds`` pass, or the store is
        unreachable (the spool keeps the rest for the next start)."""
        deadline = asyncio.get_running_loop().time() + seconds
        failures = self.failures
        if self.rotation is not None and self.link != "connected":
            # The stores failed a while ago (one that started after this node, say): each gets one more try now,
            # and only a failure from here on means there is nothing to upload to.
            self.rotation.retry_now()
            self._retry.set()
        while self.pending and self.rotation and asyncio.get_running_loop().time() < deadline:
            if self.link != "connected" and self.rotation.all_failing and self.failures > failures:
                break
            await asyncio.sleep(0.05)  # noqa: ASYNC110 - polls two conditions and a deadline
        return not self.pending


async def _work_or_close(wake: asyncio.Event, ws: ClientConnection) -> None:
    """Wait for something to send; a store that goes away meanwhile raises at once (not at the next segment), so
    the node is on the next store before it has anything to send."""
    work = asyncio.ensure_future(wake.wait())
    closed = asyncio.ensure_future(ws.wait_closed())
    try:
        await asyncio.wait((work, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        work.cancel()
        closed.cancel()
    if not wake.is_set():
        raise ConnectionError(f"the store closed the connection while idle ({ws.close_code or 'no close frame'})")


def _is_open(item: SpooledItem) -> bool:
    return isinstance(item, SpooledEvent) and item.record.open


def _ingest_version(ws: ClientConnection) -> int:
    """The store's /ingest version from its handshake response; 2 when it does not say (a store before v3)."""
    value = ws.response.headers.get(INGEST_VERSION_HEADER) if ws.response is not None else None
    try:
        return int(value) if value is not None else 2
    except ValueError:
        log.warning("store sent %s: %r, not a number; taking it for version 2", INGEST_VERSION_HEADER, value)
        return 2


def _name(item: SpooledItem) -> str:
    return item.record.record_id if isinstance(item, SpooledEvent) else item.header.segment_id


def _move_aside(spool: Spool, item: SpooledItem) -> None:
    aside = spool.root / ".refused"
    paths = [item.path] if isinstance(item, SpooledEvent) else [item.media_path, item.header_path]
    try:
        aside.mkdir(parents=True, exist_ok=True)
        for path in paths:
            if path.exists():
                path.rename(aside / f"{path.parent.name}-{path.name}")
    except OSError as exc:
        log.error("could not move %s aside: %s", paths[0], exc)


def _read_verified(item: SpooledSegment) -> bytes:
    """The spooled bytes, checked against their header before they go on the wire."""
    data = item.media_path.read_bytes()
    if len(data) > MAX_SEGMENT_BYTES or len(data) != item.header.bytes:
        raise ValueError(f"file has {len(data)} bytes, its header says {item.header.bytes}")
    if sha256_hex(data) != item.header.sha256:
        raise ValueError("file's SHA-256 does not match its header")
    return data
