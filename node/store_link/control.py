"""The node's end of the ``/control`` link: hello, heartbeats, and settings and event labels from the store.

Reconnects for as long as the node runs; while the link is down the node goes on
recording and spooling as before. With several stores it shares the upload link's
``StoreRotation``: a store that fails is left for the next one at once, and each
store backs off on its own (shared/store_list.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import websockets
from websockets.asyncio.client import connect

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
from shared.store_list import StoreRotation, is_tls, parse_store_list
from shared.urls import ws_url

log = logging.getLogger(__name__)


class ControlLink:
    def __init__(self, store_url: str, hello: Callable[[], Hello], health: Callable[[], NodeHealth],
                 on_settings: Callable[[SettingsPush], None], on_revoked: Callable[[tuple[str, ...]], None],
                 headers: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None,
                 on_event_label: Callable[[EventLabel], None] | None = None,
                 rotation: StoreRotation | None = None) -> None:
        self.rotation = rotation or StoreRotation(parse_store_list(store_url))
        self.store = self.rotation.current  # the store the link is on (or tries next)
        self.hello, self.health, self.on_settings, self.on_revoked = hello, health, on_settings, on_revoked
        self.on_event_label = on_event_label
        self.headers, self.ssl_context = headers or {}, ssl_context
        self.state = "disconnected"
        self.last_error: str | None = None

    @property
    def url(self) -> str:
        return ws_url(self.store) + "/control"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            store, delay = self.rotation.choose(loop.time())
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self.store = store
            try:
                async with connect(self.url, open_timeout=10, max_size=2**20, additional_headers=self.headers,
                                   ssl=self.ssl_context if is_tls(store) else None) as ws:
                    await ws.send(self.hello().serialize())
                    self.state, self.last_error = "connected", None
                    self.rotation.succeeded(store)
                    await _first_to_end(self._beat(ws), self._listen(ws))  # listening ends when the store goes
                self.last_error = f"{store}: the store closed the control link"
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.last_error = f"{store}: {type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug in a callback must not end the link for good
                self.last_error = f"{store}: {type(exc).__name__}: {exc}"
                log.exception("control link failed")
            self.state = "disconnected"
            self.rotation.failed(store, loop.time(), self.last_error)
            log.debug("control link down (%s); next: %s", self.last_error, self.rotation.choose(loop.time()))

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


async def _first_to_end(*work: Coroutine[Any, Any, None]) -> None:
    """Run them together until one returns or raises; the others are cancelled; its exception is raised."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
