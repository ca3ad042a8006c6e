"""The store's network face: ``/ingest`` (WebSocket) and ``GET /health``.

Thin: the ingest framing is ``shared.protocol.ingest.IngestReceiver``; this
module only moves messages between it, the socket and the ``Ingestor``.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from shared.httpjson import error_response, json_response
from shared.protocol.ingest import MAX_HEADER_BYTES, MAX_SEGMENT_BYTES, Ack, IngestReceiver
from store.db import Index
from store.ingest import Ingestor

log = logging.getLogger(__name__)


class StoreServer:
    def __init__(self, ingestor: Ingestor, index: Index) -> None:
        self.ingestor = ingestor
        self.index = index
        self.started = time.monotonic()
        self.server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await serve(
            self._handle, host, port, process_request=self._route,
            max_size=MAX_SEGMENT_BYTES + MAX_HEADER_BYTES + 64,
            compression=None,
        )
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            return json_response(connection, HTTPStatus.OK, await self.health())
        if path == "/ingest":
            return None
        return error_response(connection, HTTPStatus.NOT_FOUND,
                              f"no endpoint {path!r}; try /health or /ingest")

    async def _handle(self, connection: ServerConnection) -> None:
        receiver = IngestReceiver()
        peer = "{}:{}".format(*connection.remote_address[:2])
        try:
            async for message in connection:
                event = receiver.receive(message)
                if event is None:
                    log.warning("refused a malformed message from %s", peer)
                else:
                    reply = await self.ingestor.ingest(event.header, event.payload)
                    if isinstance(reply, Ack):
                        receiver.acknowledge(reply.segment_id, reply.duplicate)
                    else:
                        log.warning("refused segment from %s: %s", peer, reply.message)
                        receiver.refuse(reply)
                for out in receiver.data_to_send():
                    await connection.send(out)
        except websockets.ConnectionClosed:
            pass

    async def health(self) -> dict:
        stats = self.ingestor.stats
        return {
            "service": "store",
            "uptime_s": round(time.monotonic() - self.started, 1),
            "root": str(self.ingestor.root),
            "ingest": {"stored": stats.stored, "duplicates": stats.duplicates,
                       "refused": stats.refused, "bytes_stored": stats.bytes_stored},
            "cameras": await self.index.camera_totals(),
        }
