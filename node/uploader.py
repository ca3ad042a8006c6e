"""Ships spooled segments to the store, oldest first, and deletes each only after its ack.

A thin asyncio shell around ``shared.protocol.ingest.IngestSender``. One segment
is in flight at a time: the store's ack means durable and indexed, so the
spool never forgets anything the store does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import websockets
from websockets.asyncio.client import ClientConnection, connect

from node.spool import Spool, SpooledSegment
from shared.backoff import Backoff
from shared.protocol.errors import ProtocolError
from shared.protocol.ingest import MAX_SEGMENT_BYTES, Ack, IngestSender, sha256_hex
from shared.urls import ws_url

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30.0


class Uploader:
    def __init__(self, store_url: str, spool: Spool) -> None:
        self.url = ws_url(store_url) + "/ingest"
        self.spool = spool
        self.pending: deque[SpooledSegment] = deque()
        self._wake = asyncio.Event()
        self.link = "disconnected"
        self.last_error: str | None = None
        self.uploaded = 0
        self.rejected = 0

    def add(self, item: SpooledSegment) -> None:
        self.pending.append(item)
        self._wake.set()

    def backlog(self) -> dict:
        oldest = self.pending[0].header.start_us if self.pending else None
        return {"segments": len(self.pending),
                "bytes": sum(i.header.bytes for i in self.pending),
                "oldest_start_us": oldest}

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            try:
                async with connect(self.url, max_size=2**20, open_timeout=10,
                                   write_limit=2**20) as ws:
                    self.link = "connected"
                    self.last_error = None
                    backoff.reset()
                    await self._drain(ws)
            except (OSError, TimeoutError, websockets.WebSocketException, ProtocolError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = backoff.next_delay()
                log.warning("store link %s down (%s); retrying in %.1f s", self.url,
                            self.last_error, delay)
                self.link = "disconnected"
                await asyncio.sleep(delay)
            finally:
                self.link = "disconnected"

    async def _drain(self, ws: ClientConnection) -> None:
        sender = IngestSender()
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            item = self.pending[0]
            try:
                data = await asyncio.to_thread(_read_verified, item)
            except (OSError, ValueError) as exc:
                # The spool copy is gone or damaged: resending it can never succeed.
                log.error("spooled segment %s cannot be sent (%s); setting it aside",
                          item.header.segment_id, exc)
                self._set_aside(item)
                continue
            sender.send_segment(item.header, data)
            for message in sender.data_to_send():
                await ws.send(message)
            reply = sender.receive(await asyncio.wait_for(ws.recv(), ACK_TIMEOUT_S))
            if isinstance(reply, Ack):
                await asyncio.to_thread(self.spool.remove, item)
                self.pending.popleft()
                self.uploaded += 1
            elif reply.retry:
                raise ProtocolError(reply.code, f"store asked to retry later: {reply.message}")
            else:
                log.error("store refused segment %s: %s (%s); setting it aside",
                          item.header.segment_id, reply.message, reply.code)
                self._set_aside(item)

    def _set_aside(self, item: SpooledSegment) -> None:
        """Keep a refused segment for a human to look at, out of the upload queue."""
        self.rejected += 1
        self.pending.popleft()
        aside = self.spool.root / ".refused"
        try:
            aside.mkdir(parents=True, exist_ok=True)
            for path in (item.media_path, item.header_path):
                if path.exists():
                    path.rename(aside / f"{item.header.camera}-{path.name}")
        except OSError as exc:
            log.error("could not move %s aside: %s", item.media_path, exc)

    async def drain(self, seconds: float) -> bool:
        """Wait until everything pending is uploaded, or ``seconds`` pass, or the store is
        unreachable (the spool keeps the rest for the next start)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self.pending and asyncio.get_running_loop().time() < deadline:
            if self.link != "connected" and self.last_error is not None:
                break
            await asyncio.sleep(0.05)  # noqa: ASYNC110 - polls two conditions and a deadline
        return not self.pending


def _read_verified(item: SpooledSegment) -> bytes:
    """The spooled bytes, checked against their header before they go on the wire."""
    data = item.media_path.read_bytes()
    if len(data) > MAX_SEGMENT_BYTES or len(data) != item.header.bytes:
        raise ValueError(f"file has {len(data)} bytes, its header says {item.header.bytes}")
    if sha256_hex(data) != item.header.sha256:
        raise ValueError("file's SHA-256 does not match its header")
    return data
