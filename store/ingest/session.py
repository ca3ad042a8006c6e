"""``/ingest``: one node's upload session, framed by ``shared.protocol.ingest``.

Segments go to the ``Ingestor``, events to the index; each is acknowledged or
refused in order. A node token speaks for one node: anything sent under
another node's id is refused (``node-mismatch``, not retried), so a stolen
token cannot forge another node's footage.

Memory is bounded before bytes are read (docs/security.md, Limits): messages
arrive one fragment at a time (the route's frame limit is ``MAX_FRAGMENT_BYTES``);
the first fragment must be the start of a segment, whose declared size is then
reserved from the ``IngestBudget`` before the rest is read, and never exceeded.
A message refused before its end closes the connection (1008), since its rest
is never read; one refused once whole leaves the session open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode

from shared.auth import Claims
from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import (
    MAX_EVENT_BYTES,
    Ack,
    IngestReceiver,
    Refusal,
    SegmentAssembly,
    SegmentReceived,
    SegmentStart,
)
from store.index.db import Index
from store.index.location import IndexUnavailable
from store.ingest.budget import BudgetWaitExpired, IngestBudget
from store.ingest.events import ChangeKeeper, EventNotice, ingest_event
from store.ingest.writer import Ingestor

log = logging.getLogger(__name__)

MAX_CONNECTIONS_PER_NODE = 4  # a node uses one; a restart may overlap a connection the store still holds
BUDGET_WAIT_S = 20.0  # under the node's 30 s ack timeout: a busy store says so instead of going quiet
# Once its bytes are reserved, a segment must keep arriving, so nobody holds a reservation idle: no frame for
# FRAME_IDLE_S, or the whole of it not within READ_GRACE_S + 1 s per MIN_READ_BYTES_PER_S, is `too-slow`. The
# pace is low on purpose (512 kbit/s): a node on a slow uplink that keeps up with its camera must never be
# refused forever (a 90 MB ten-minute segment over 200 KB/s takes 450 s; it is allowed 1,400 s).
READ_GRACE_S = 30.0
MIN_READ_BYTES_PER_S = 64 * 1024
FRAME_IDLE_S = 30.0  # a 1 MiB frame at the minimum pace takes 16 s
CLOSE_DRAIN_S = 2.0  # after refusing mid-message: discard what the peer sent before it saw the close


def read_deadline_s(size: int) -> float:
    return READ_GRACE_S + size / MIN_READ_BYTES_PER_S


class MessageCut(Exception):
    """A message refused before its end: the refusal is sent, then the connection closes (its rest is unread)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class IngestSessions:
    def __init__(self, ingestor: Ingestor, index: Index,
                 timed: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
                 budget: IngestBudget | None = None,
                 max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE) -> None:
        """``timed``: wraps each segment's ingest (the store's latency histogram)."""
        self.ingestor = ingestor
        self.index = index
        self.timed = timed
        self.budget = budget or IngestBudget()
        self.max_connections_per_node = max_connections_per_node
        self.connections: Counter[str] = Counter()  # node token subject -> open /ingest connections
        # Told of every event row an ingest inserted or updated, after its commit (object detection watches
        # cameras with an open motion event). Called on the event loop: it must not block.
        self.on_event: Callable[[EventNotice], None] | None = None
        # Given the event rows about to change before their commit, so before the ack (the notify change journal,
        # store/notify/journal.py): a store killed after the ack still notifies the change when it starts again.
        self.journal: ChangeKeeper | None = None

    async def serve(self, connection: ServerConnection, claims: Claims | None) -> None:
        # Counted per token subject; without authentication anyone may connect anyway, so nothing to count by.
        node = claims.subject if claims is not None else None
        if node is not None and self.connections[node] >= self.max_connections_per_node:
            log.warning("refused an ingest connection for node %s: it already has %d open", node,
                        self.connections[node])
            await _cut(connection, Refusal(
                "too-many-connections", f"node {node!r} already has {self.connections[node]} ingest connections "
                f"open, the most one node may hold ({self.max_connections_per_node}); a node needs one. "
                "Retry when one has closed.", retry=True), CloseCode.TRY_AGAIN_LATER)
            return
        if node is not None:
            self.connections[node] += 1
        try:
            await self._serve(connection, claims)
        finally:
            if node is not None:
                self.connections[node] -= 1
                if not self.connections[node]:
                    del self.connections[node]

    async def _serve(self, connection: ServerConnection, claims: Claims | None) -> None:
        receiver = IngestReceiver()
        peer = "{}:{}".format(*connection.remote_address[:2])
        while True:
            fragments = connection.recv_streaming()
            try:
                first = await anext(fragments)  # ConnectionClosed ends the session (the server shell's catch)
            except StopAsyncIteration:  # pragma: no cover - websockets always yields a message's first frame
                continue
            try:
                if isinstance(first, str):
                    await self._event(await _whole_text(first, fragments), receiver, claims, peer)
                else:
                    await self._segment(first, fragments, receiver, claims, peer)
            except MessageCut as cut:
                log.warning("refused a message from %s before its end: %s", peer, cut.refusal.message)
                await _cut(connection, cut.refusal, CloseCode.POLICY_VIOLATION, rest=fragments)
                return
            for out in receiver.data_to_send():
                await connection.send(out)

    async def _event(self, text: str, receiver: IngestReceiver, claims: Claims | None, peer: str) -> None:
        event = receiver.event(text)
        if event is None:
            log.warning("refused a malformed event from %s", peer)
        elif (refusal := _mismatch(claims, event.node, event.record_id, peer)) is not None:
            receiver.refuse(refusal)
        else:
            try:
                taken = await ingest_event(self.index.conn, event, self.journal)
            except IndexUnavailable as exc:  # PostgreSQL out of reach: the node keeps the event and resends it
                log.error("cannot record event %s: %s", event.record_id, exc)
                receiver.refuse(Refusal("index-unavailable", f"store cannot reach its index to record event "
                                        f"{event.record_id}: {exc}", event.record_id, retry=True))
                return
            receiver.acknowledge(taken.ack.segment_id, taken.ack.duplicate)
            if event.kind == "loss" and taken.new:
                log.error("node %s reports LOST footage on %s: %s", event.node, event.camera, event.detail)
            elif event.kind == "camera-stalled" and (taken.new or not event.open):
                log.error("node %s: camera %s %s: %s", event.node, event.camera,
                          "STALLED (no frames)" if event.open else
                          f"stalled for {(event.end_us - event.start_us) / 1e6:.1f} s", event.detail)
            if taken.changed and self.on_event is not None:
                try:
                    self.on_event(EventNotice(taken.event_id, event, taken.new, taken.ended, taken.journal))
                except Exception:  # the event is stored and acknowledged; an observer's bug must not cost that
                    log.exception("event observer failed on %s", event.record_id)

    async def _segment(self, first: bytes, fragments: AsyncIterator[bytes | str], receiver: IngestReceiver,
                       claims: Claims | None, peer: str) -> None:
        start = receiver.segment_start(first, final=False)
        refusal = start if isinstance(start, Refusal) else _mismatch(claims, start.header.node,
                                                                     start.header.segment_id, peer)
        if refusal is not None:
            if isinstance(start, Refusal):
                log.warning("refused a malformed message from %s: %s", peer, refusal.message)
            if await _more(fragments):
                raise MessageCut(refusal)
            receiver.refuse(refusal)
            return
        assert isinstance(start, SegmentStart)
        header = start.header
        try:
            async with self.budget.reserve(claims.subject if claims else header.node, header.bytes,
                                           wait_s=BUDGET_WAIT_S):
                segment = await self._assemble(start, fragments)
                if isinstance(segment, Refusal):
                    reply: Ack | Refusal = segment
                else:
                    with self.timed():
                        reply = await self.ingestor.ingest(segment.header, segment.payload)
        except BudgetWaitExpired:
            stats = self.budget.stats()
            raise MessageCut(Refusal(
                "busy", f"the store is already receiving {stats.reserved_bytes} bytes of segments, its ingest "
                f"budget allows {self.budget.total.capacity} in all and {self.budget.per_node_bytes} a node; "
                f"segment {header.segment_id} waited {BUDGET_WAIT_S:.0f} s. Retry shortly.",
                header.segment_id, retry=True)) from None
        if isinstance(reply, Ack):
            receiver.acknowledge(reply.segment_id, reply.duplicate)
        else:
            log.warning("refused segment from %s: %s", peer, reply.message)
            receiver.refuse(reply)

    async def _assemble(self, start: SegmentStart,
                        fragments: AsyncIterator[bytes | str]) -> SegmentReceived | Refusal:
        """The whole segment, or the refusal of one that ended short; ``MessageCut`` for one refused before
        its end (more bytes than declared, too slow)."""
        sid = start.header.segment_id
        assembly = SegmentAssembly(start)
        loop = asyncio.get_running_loop()
        allowed_s = read_deadline_s(start.header.bytes)
        deadline = loop.time() + allowed_s
        frames = aiter(fragments)
        try:
            while True:
                wait_s = min(FRAME_IDLE_S, deadline - loop.time())
                if wait_s <= 0:
                    raise TimeoutError
                try:
                    fragment = await asyncio.wait_for(anext(frames), wait_s)
                except StopAsyncIteration:
                    break
                assert isinstance(fragment, bytes)
                assembly.feed(fragment)
        except ProtocolError as exc:
            raise MessageCut(Refusal(exc.code, f"segment {sid}: {exc.message}", sid)) from None
        except TimeoutError:
            raise MessageCut(Refusal(
                "too-slow", f"segment {sid}: {assembly.received} of {start.header.bytes} bytes arrived; the store "
                f"holds a segment's reserved bytes only while a frame arrives at least every {FRAME_IDLE_S:g} s "
                f"and all of them within {READ_GRACE_S:g} s plus 1 s per {MIN_READ_BYTES_PER_S} bytes "
                f"({allowed_s:.0f} s here)", sid, retry=True)) from None
        try:
            return assembly.complete()
        except ProtocolError as exc:  # the message ended short: refused, and the session goes on
            return Refusal(exc.code, f"segment {sid}: {exc.message}", sid)


def _mismatch(claims: Claims | None, node: str, item: str, peer: str) -> Refusal | None:
    """The refusal for an item sent under another node's id than the token's."""
    if claims is None or node == claims.subject:
        return None
    log.warning("refused %s from %s: sent as node %s with a token for %s", item, peer, node, claims.subject)
    return Refusal("node-mismatch", f"this token is for node {claims.subject!r}, not {node!r}; make one with "
                   f"--subject {node}", item, retry=False)


async def _more(fragments: AsyncIterator[bytes | str]) -> bool:
    """Whether the message goes on past the fragment just read (reads at most one more fragment)."""
    try:
        await anext(fragments)
    except StopAsyncIteration:
        return False
    return True


async def _whole_text(first: str, fragments: AsyncIterator[bytes | str]) -> str:
    parts, size = [first], len(first)
    async for part in fragments:
        assert isinstance(part, str)
        size += len(part)
        if size > MAX_EVENT_BYTES:
            raise MessageCut(Refusal("too-large", f"an event may be at most {MAX_EVENT_BYTES} bytes; this one is "
                                     "longer; send segments as binary messages"))
        parts.append(part)
    return "".join(parts)


async def _cut(connection: ServerConnection, refusal: Refusal, code: CloseCode,
               rest: AsyncIterator[bytes | str] | None = None) -> None:
    """Send the refusal, then close: what is left of the message is never kept.

    The peer's answer to the close frame queues behind the frames it had already sent (its socket buffer, a few
    MiB at most), which wait unread while websockets' frame queue is full: they are discarded, one at a time, for
    up to ``CLOSE_DRAIN_S``, so the close completes instead of timing out.
    """
    await connection.send(refusal.serialize())
    reason = f"{refusal.code}: {refusal.message}".encode()[:120].decode(errors="ignore")
    closing = asyncio.create_task(connection.close(code, reason))
    if rest is not None:
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed, websockets.ConcurrencyError):
            async with asyncio.timeout(CLOSE_DRAIN_S):
                async for _ in rest:
                    pass
    await closing
