"""``/ingest``: one node's upload session, framed by ``shared.protocol.ingest``.

Segments go to the ``Ingestor``, events to the index; each is acknowledged or
refused in order. A node token speaks for one node: anything sent under
another node's id is refused (``node-mismatch``, not retried), so a stolen
token cannot forge another node's footage.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from websockets.asyncio.server import ServerConnection

from shared.auth import Claims
from shared.protocol.ingest import Ack, EventRecord, IngestReceiver, Refusal
from store.index.db import Index
from store.ingest.events import ingest_event
from store.ingest.writer import Ingestor

log = logging.getLogger(__name__)


class IngestSessions:
    def __init__(self, ingestor: Ingestor, index: Index,
                 timed: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext) -> None:
        """``timed``: wraps each segment's ingest (the store's latency histogram)."""
        self.ingestor = ingestor
        self.index = index
        self.timed = timed

    async def serve(self, connection: ServerConnection, claims: Claims | None) -> None:
        receiver = IngestReceiver()
        peer = "{}:{}".format(*connection.remote_address[:2])
        async for message in connection:
            event = receiver.receive(message)
            node = None if event is None else (event.node if isinstance(event, EventRecord) else event.header.node)
            if event is None:
                log.warning("refused a malformed message from %s", peer)
            elif claims is not None and node != claims.subject:
                item = event.record_id if isinstance(event, EventRecord) else event.header.segment_id
                log.warning("refused %s from %s: sent as node %s with a token for %s", item, peer, node,
                            claims.subject)
                receiver.refuse(Refusal("node-mismatch", f"this token is for node {claims.subject!r}, not "
                                        f"{node!r}; make one with --subject {node}", item, retry=False))
            elif isinstance(event, EventRecord):
                ack = await ingest_event(self.index.conn, event)
                receiver.acknowledge(ack.segment_id, ack.duplicate)
                if event.kind == "loss" and not ack.duplicate:
                    log.error("node %s reports LOST footage on %s: %s", event.node, event.camera, event.detail)
            else:
                with self.timed():
                    reply = await self.ingestor.ingest(event.header, event.payload)
                if isinstance(reply, Ack):
                    receiver.acknowledge(reply.segment_id, reply.duplicate)
                else:
                    log.warning("refused segment from %s: %s", peer, reply.message)
                    receiver.refuse(reply)
            for out in receiver.data_to_send():
                await connection.send(out)
