"""``/control``: each node's link to the store, and the watch kept over the fleet through them.

A node opens the link with a hello (its cameras, its live URL); the store
answers with each camera's settings and the revoked token ids, then takes
heartbeats (the node's health) into the ``Fleet``. The watchdog marks nodes
down when their heartbeats stop, and sends a new revoked list to every node as
soon as ``sht token revoke`` changes it. Object detection tells a node its
verdict on each of its events (``push_event_label``): a label, or null once the
event is over and analysed with nothing found, the one verdict on which its
``objects`` recording mode lets footage go.

Stores sharing an index (``follow_cluster``): each reads the fleet's rows every second and refreshes those of
its own links every two (store/nodes/fleet.py), and sends its nodes the settings changed through any store
within ``SETTINGS_POLL_S`` (the index marks each change sent, store/index/settings.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
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
from store.index.location import IndexUnavailable
from store.nodes.fleet import Fleet
from store.nodes.fleet_table import READ_S, REFRESH_S

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10.0
# How often a store sharing an index looks for settings changed through another store; the store the change was
# made on waits up to PUSH_CONFIRM_S for the node's store to mark it sent (its answer says whether it was).
SETTINGS_POLL_S = 0.5
PUSH_CONFIRM_S = 3.0


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
        self._closing: set[asyncio.Task] = set()  # stale links being closed (_close_moved)

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
        # From the hello on, whatever fails: the link is taken out of the fleet's (a claim the index refused left
        # it there, and the store showed the node as its own whichever store it moved to).
        try:
            await self.fleet.hello(first, host, connection)
            log.info("node %s is up (%s, cameras %s)", first.node, host, ", ".join(first.cameras))
            for camera in first.cameras:
                await self.push_settings(camera)
            await connection.send(Revocations(tuple(sorted(self.revoked()))).serialize())
            async for message in connection:
                try:
                    event = parse_control(message)
                except ProtocolError as exc:
                    log.warning("node %s sent a bad control message: %s", first.node, exc)
                    continue
                if isinstance(event, Heartbeat):
                    self.fleet.heartbeat(first.node, event.health)
        except IndexUnavailable as exc:  # the hello could not be recorded: the node tries again, here or elsewhere
            log.warning("node %s: control link refused: %s", first.node, exc)
            await connection.close(1011, "the store cannot reach its index; try again or another store")
        finally:
            log.warning("node %s control link closed", first.node)
            await self.fleet.link_closed(first.node, connection)

    async def push_settings(self, camera: str) -> None:
        """Send a camera's current settings to the node that owns it, if it is connected."""
        node = self.fleet.node_of(camera)
        link: Any = self.fleet.links.get(node) if node else None
        if link is None:
            return
        values, versions = await settings.load_versioned(self.index.conn, camera)
        if values.recording_mode == OBJECTS_MODE and self.versions.get(node or "", 1) < EVENT_LABEL_VERSION:
            # A node older than the objects mode would refuse the whole message; motion keeps (more than) all
            # the footage objects mode would.
            log.warning("node %s is too old for recording_mode objects on %s; it records in motion mode",
                        node, camera)
            values = CameraSettings({**values.to_json(), RECORDING_MODE: MOTION})
        try:
            await link.send(SettingsPush(camera, values).serialize())
        except websockets.ConnectionClosed:
            return  # it gets them all again at its next hello
        if self.fleet.shared:  # the store the change was made on is waiting for this
            await settings.mark_pushed(self.index.conn, camera, versions, self.fleet.now_us())

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
        self.fleet.check()  # logs the nodes that went down
        revoked = self.revoked()
        if revoked != self._revoked_sent:  # `sht token revoke` ran: tell the nodes now
            self._revoked_sent = revoked
            self.close_revoked(revoked)  # and end what those tokens have open here
            for link in list(self.fleet.links.values()):
                with contextlib.suppress(websockets.ConnectionClosed):
                    await link.send(Revocations(tuple(sorted(revoked))).serialize())

    # ---- stores sharing an index ----

    def cluster_tasks(self) -> list[tuple[str, float, Callable[[], Awaitable[None]]]]:
        """(name, period, one round) of the work that keeps this store's fleet in step with the other stores'."""
        return [("fleet-read", READ_S, lambda: self.fleet.sync(self._close_moved)),
                ("fleet-refresh", REFRESH_S, self.fleet.publish),
                ("settings-follow", SETTINGS_POLL_S, self.push_changed_settings)]

    async def follow_cluster(self, name: str, period_s: float, round_once: Callable[[], Awaitable[None]]) -> None:
        """Forever, every ``period_s``: one round; an index out of reach is logged when it starts and ends."""
        failing = False
        while True:
            await asyncio.sleep(period_s)
            try:
                await round_once()
            except Exception as exc:  # PostgreSQL away: the fleet shown is the last read, tried again next round
                if not failing:
                    log.warning("%s: cannot reach the index (%s); trying every %.1f s", name,
                                " ".join(str(exc).split()) or type(exc).__name__, period_s)
                failing = True
                continue
            if failing:
                log.info("%s: the index answers again", name)
            failing = False

    async def push_changed_settings(self) -> None:
        """Settings changed through any store and not sent yet, to the nodes linked here."""
        for camera in sorted(await settings.unpushed(self.index.conn)):
            node = self.fleet.node_of(camera)
            if node in self.fleet.links:
                await self.push_settings(camera)

    async def _close_moved(self, node: str, link: Any, other: str) -> None:
        """The node said hello to ``other`` after it did here: the link here is stale (its peer gone without a
        close, or a reconnect the network hid). Closing it stops this store refreshing and pushing to nothing."""
        log.warning("node %s is linked to store %s now; closing its stale control link here", node, other)
        await self.fleet.link_closed(node, link)  # now: a dead peer's close handshake takes seconds
        closing = asyncio.create_task(link.close(1001, f"node {node} is linked to store {other} now"[:120]))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
