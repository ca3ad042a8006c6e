"""The node's end of the ``/control`` link: hello, heartbeats, and settings and event labels from the store.

Reconnects with backoff for as long as the node runs; while the link is down
the node goes on recording and spooling as before.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import connect

from shared.backoff import Backoff
from shared.protocol.control import (
    HEARTBEAT_INTERVAL_S,
    EventLabel,
    Heartbeat,
    Hello,
    Revocations,
    SettingsPush,
    parse_control,
)
from shared.protocol.errors import ProtocolError
from shared.protocol.health import NodeHealth
from shared.urls import ws_url

log = logging.getLogger(__name__)


class ControlLink:
    def __init__(self, store_url: str, hello: Callable[[], Hello], health: Callable[[], NodeHealth],
                 on_settings: Callable[[SettingsPush], None], on_revoked: Callable[[tuple[str, ...]], None],
                 headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None,
                 on_event_label: Callable[[EventLabel], None] | None = None) -> None:
        self.url = ws_url(store_url) + "/control"
        self.hello, self.health, self.on_settings, self.on_revoked = hello, health, on_settings, on_revoked
        self.on_event_label = on_event_label
        self.headers, self.ssl_context = headers or {}, ssl_context
        self.state = "disconnected"
        self.last_error: str | None = None

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async with connect(self.url, open_timeout=10, max_size=2**20, additional_headers=self.headers,
                                   ssl=self.ssl_context) as ws:
                    await ws.send(self.hello().serialize())
                    self.state, self.last_error = "connected", None
                    backoff.reset()
                    await asyncio.gather(self._beat(ws), self._listen(ws))
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug in a callback must not end the link for good
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("control link failed")
            self.state = "disconnected"
            delay = backoff.next_delay()
            log.debug("control link down (%s); retrying in %.1f s", self.last_error, delay)
            await asyncio.sleep(delay)

    async def _beat(self, ws: Any) -> None:
        while True:
            await ws.send(Heartbeat(self.health()).serialize())
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _listen(self, ws: Any) -> None:
        async for message in ws:
            try:
                event = parse_control(message)
            except ProtocolError as exc:
                log.warning("store sent a bad control message: %s", exc)
                continue
            if isinstance(event, SettingsPush):
                self.on_settings(event)
            elif isinstance(event, Revocations):
                self.on_revoked(event.token_ids)
            elif isinstance(event, EventLabel) and self.on_event_label is not None:
                self.on_event_label(event)
