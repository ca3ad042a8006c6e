"""``/control``: each node's link to the store, and the watch kept over the fleet through them.

A node opens the link with a hello (its cameras, its live URL); the store
answers with each camera's settings and the revoked token ids, then takes
heartbeats (the node's health) into the ``Fleet``. The watchdog marks nodes
down when their heartbeats stop, and sends a new revoked list to every node as
soon as ``sht token revoke`` changes it. Object detection tells a node its
verdict on each of its events (``push_event_label``): a label, or null once the
event is over and analysed with nothing found, the one verdict on which its
``objects`` recording mode lets footage go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection

from shared.auth import Claims
from shared.protocol.control import (
    EVENT_LABEL_VERSION,
    HEARTBEAT_INTERVAL_S,
    EventLabel,
    Heartbeat,
    Hello,
    Revocations,
    SettingsPush,
    parse_control,
)
from shared.protocol.errors import ProtocolError
from shared.settings import MOTION, OBJECTS_MODE, RECORDING_MODE, CameraSettings
from store.index import settings
from store.index.db import Index
from store.nodes.fleet import Fleet

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10.0


class ControlLinks:
    def __init__(self, fleet: Fleet, index: Index, revoked: Callable[[], frozenset[str]],
                 close_revoked: Callable[[frozenset[str]], object]) -> None:
        """``revoked``: the current revoked token ids; ``close_revoked``: ends what such tokens have open here."""
        self.fleet = fleet
        self.index = index
        self.revoked = revoked
        self.close_revoked = close_revoked
        self._revoked_sent: frozenset[str] = frozenset()
        self.versions: dict[str, int] = {}  # each node's hello version, as of its latest link

    async def serve(self, connection: ServerConnection, claims: Claims | None) -> None:
        """One node's link, from its hello until it closes."""
        try:
            first = parse_control(await asyncio.wait_for(connection.recv(), HELLO_TIMEOUT_S))
        except (ProtocolError, TimeoutError) as exc:
            await connection.close(1008, f"expected a hello first: {exc}"[:120])
            return
        if not isinstance(first, Hello):
            await connection.close(1008, "expected a hello first")
            return
        if claims is not None and claims.subject != first.node:
            log.warning("refused control link: node %s with a token for %s", first.node, claims.subject)
            await connection.close(1008, f"token is for node {claims.subject}, not {first.node}"[:120])
            return
        host = connection.remote_address[0]
        self.versions[first.node] = first.version
        await self.fleet.hello(first, host, connection)
        log.info("node %s is up (%s, cameras %s)", first.node, host, ", ".join(first.cameras))
        for camera in first.cameras:
            await self.push_settings(camera)
        await connection.send(Revocations(tuple(sorted(self.revoked()))).serialize())
        try:
            async for message in connection:
                try:
                    event = parse_control(message)
                except ProtocolError as exc:
                    log.warning("node %s sent a bad control message: %s", first.node, exc)
                    continue
                if isinstance(event, Heartbeat):
                    self.fleet.heartbeat(first.node, event.health)
        finally:
            self.fleet.link_closed(first.node, connection)
            log.warning("node %s control link closed", first.node)

    async def push_settings(self, camera: str) -> None:
        """Send a camera's current settings to the node that owns it, if it is connected."""
        node = self.fleet.node_of(camera)
        link: Any = self.fleet.links.get(node) if node else None
        if link is None:
            return
        values = await settings.load(self.index.conn, camera)
        if values.recording_mode == OBJECTS_MODE and self.versions.get(node or "", 1) < EVENT_LABEL_VERSION:
            # A node older than the objects mode would refuse the whole message; motion keeps (more than) all
            # the footage objects mode would.
            log.warning("node %s is too old for recording_mode objects on %s; it records in motion mode",
                        node, camera)
            values = CameraSettings({**values.to_json(), RECORDING_MODE: MOTION})
        with contextlib.suppress(websockets.ConnectionClosed):
            await link.send(SettingsPush(camera, values).serialize())

    async def push_event_label(self, node: str, camera: str, start_us: int, label: str | None) -> bool:
        """Tell ``node`` the verdict on its event of ``camera`` starting at ``start_us`` (the node's stamp): it got
        ``label``, or (None) it is over and was analysed with none of the camera's objects found. False when it
        was not sent: the node is not connected, or too old to understand it (a node without the ``objects``
        recording mode, which needs no verdicts)."""
        link: Any = self.fleet.links.get(node)
        if link is None or self.versions.get(node, 1) < EVENT_LABEL_VERSION:
            return False
        try:
            await link.send(EventLabel(camera, start_us, label).serialize())
        except websockets.ConnectionClosed:
            return False
        return True

    async def watch(self) -> None:
        """Forever: nodes whose heartbeats stopped are marked down; a changed revoked list goes out at once."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S / 2)
            try:
                await self.check_once()
            except Exception:  # e.g. an unreadable revoked.json: log it, keep watching the fleet
                log.exception("fleet check failed")

    async def check_once(self) -> None:
        for node in self.fleet.check():
            log.warning("node %s is down: no heartbeat for %.0f s", node, HEARTBEAT_INTERVAL_S * 3)
        revoked = self.revoked()
        if revoked != self._revoked_sent:  # `sht token revoke` ran: tell the nodes now
            self._revoked_sent = revoked
            self.close_revoked(revoked)  # and end what those tokens have open here
            for link in list(self.fleet.links.values()):
                with contextlib.suppress(websockets.ConnectionClosed):
                    await link.send(Revocations(tuple(sorted(revoked))).serialize())
