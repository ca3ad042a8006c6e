"""The store's notifications, composed: the change feed, the alert rules, the outbox, webhooks and MQTT.

``Store`` (store/app.py) makes one ``NotifyService``, starts it once the index is open and ``attach``es it to the
server: event ingest and the detector report their changes to ``feed``, and a setting changed through the API
tells the feed (and so the alert rules and MQTT). The change journal (store/notify/journal.py) keeps each change
from before its commit until every subscriber has put it in the outbox. ``health()`` is /health's ``notify``;
``metric_families()`` the ``sht_notify_*`` metrics.

For MQTT (store/notify/mqtt/bridge.py): with ``--mqtt``, ``start`` makes ``MqttBridge(service, options.mqtt)``,
``await bridge.start()``, and at the end ``await bridge.stop()``; ``bridge.health()`` (a dict) is /health's
``notify.mqtt``. The bridge finds everything on the service: ``feed`` (subscribe), ``outbox`` (target ``mqtt``),
``server`` (the StoreServer: fleet, control links, the index), ``settings(camera)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from shared.metrics import Family, counter, gauge
from shared.settings import STORE_WIDE, WEBHOOKS, CameraSettings
from store.notify.changes import ChangeFeed, zones_containing
from store.notify.history import NotifyHistory
from store.notify.journal import ChangeJournal
from store.notify.options import NotifyOptions
from store.notify.outbox import OUTBOX_FILE, Outbox
from store.notify.rules import AlertDesk
from store.notify.store_settings import POLL_S, load_store_setting
from store.notify.webhooks import Webhooks, describe_url, load_or_create_secret

log = logging.getLogger(__name__)


class NotifyService:
    def __init__(self, root: Path, conn: Any, settings: Callable[[str], Awaitable[CameraSettings]],
                 options: NotifyOptions | None = None) -> None:
        """``conn``: the index connection (events are read from it); ``settings(camera)``: a camera's settings."""
        self.root, self.conn, self.settings = root, conn, settings
        self.options = options or NotifyOptions()
        self.desk = AlertDesk(settings)
        self.feed = ChangeFeed(conn, decide=self.desk.decide)
        self.feed.snapshot_base = self.options.public_url
        self.feed.on_settings.append(self.desk.forget)
        self.outbox: Outbox | None = None
        self.journal: ChangeJournal | None = None  # in the outbox's file: changes kept from before their commit
        self.history = NotifyHistory()  # the recent notifications, for the API's ``notifications`` (the console)
        self.webhooks: Webhooks | None = None
        self.mqtt: Any = None
        self.server: Any = None  # the StoreServer, once attached

    async def start(self) -> None:
        """The outbox and the change journal, then the subscribers (so they hear the journal's replay); the feed
        itself starts at ``attach``."""
        self.outbox = await Outbox.open(self.root / OUTBOX_FILE, self.options.max_queued)
        self.outbox.on_finished = self.history.finished
        self.journal = await ChangeJournal.open(self.outbox)
        self.feed.journal = self.journal
        secret = await asyncio.to_thread(load_or_create_secret, self.root)
        self.webhooks = Webhooks(self.outbox, self.feed, secret, self.options.webhooks,
                                 lambda: load_store_setting(self.conn, WEBHOOKS), poll_s=POLL_S)
        await self.webhooks.start()
        if self.options.mqtt is not None:
            from store.notify.mqtt.bridge import MqttBridge

            self.mqtt = MqttBridge(self, self.options.mqtt)
            await self.mqtt.start()
        await self.journal.settle()  # every subscriber has its mark on disk; those of parts no longer run go

    def attach(self, server: Any, detection: Any = None) -> None:
        """Hear of every event change (ingest, the detector: journalled before their commit) and of settings
        changed through the API; start the feed (it replays the journal first)."""
        self.server = server
        server.api.notifications = lambda target, limit: self.history.report(self.outbox, self.target_names(),
                                                                             target, limit)
        feed = self.feed
        feed.zones = self._zone_names
        feed.zones_known = lambda: all(state.health is not None for state in server.fleet.nodes.values())
        earlier = server.ingest.on_event  # object detection's, when it is on

        def on_event(notice: Any) -> None:
            try:
                feed.ingested(notice)  # first: its journal records wait for this report
            finally:
                if earlier is not None:
                    earlier(notice)

        server.ingest.on_event = on_event
        server.ingest.journal = self.journal
        if detection is not None:
            detection.on_written = feed.labelled
            detection.journal = self.journal
        push = server.api.on_setting

        async def on_setting(camera: str) -> None:
            feed.settings_changed(camera if camera != STORE_WIDE else None)
            if push is not None and camera != STORE_WIDE:
                await push(camera)

        server.api.on_setting = on_setting
        feed.start()

    def _zone_names(self, camera: str, box: Any) -> tuple[str, ...]:
        """The camera's named zones the box lies in, from its node's latest health (none heard: none)."""
        fleet = self.server.fleet
        node = fleet.node_of(camera)
        state = fleet.nodes.get(node) if node is not None else None
        health = state.health if state is not None else None
        cam = health.cameras.get(camera) if health is not None else None
        return zones_containing(cam.zones if cam is not None else None, box)

    async def stop(self) -> None:
        await self.feed.close()  # what was reported is published first; the subscriptions then end
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.outbox is not None:
            await self.outbox.close()

    # ---- reports ----

    def target_names(self) -> dict[str, str]:
        """The targets configured now: a webhook's URL without its path (it may hold a token), the MQTT broker."""
        names = {t: describe_url(h.url) for t, h in self.webhooks.hooks.items()} if self.webhooks else {}
        if self.options.mqtt is not None:
            names["mqtt"] = self.options.mqtt.describe()  # store/notify/mqtt/bridge.py TARGET
        return names

    def health(self) -> dict[str, Any]:
        targets = self.outbox.health() if self.outbox is not None else {}
        out: dict[str, Any] = {
            "targets": targets,
            "changes": dict(self.feed.stats.published),
            "webhooks": self.webhooks.health() if self.webhooks is not None else [],
        }
        if self.webhooks is not None and self.webhooks.last_config_error:
            out["webhooks_error"] = self.webhooks.last_config_error
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.health()
        return out

    def metric_families(self) -> Iterator[Family]:
        targets = self.outbox.health() if self.outbox is not None else {}
        families = {
            "published": counter("sht_notify_published", "Notifications put in the outbox, by target", ("target",)),
            "delivered": counter("sht_notify_delivered", "Notifications delivered, by target", ("target",)),
            "retried": counter("sht_notify_retried", "Deliveries that failed and are tried again", ("target",)),
            "dropped": counter("sht_notify_dropped", "Notifications dropped undelivered because the target's "
                               "queue was full", ("target",)),
            "failed": counter("sht_notify_failed", "Notifications given up on (the receiver refused them)",
                              ("target",)),
        }
        queued = gauge("sht_notify_queued", "Notifications waiting in the outbox, by target", ("target",))
        for target, counts in targets.items():
            for name, family in families.items():
                family.add_metric([target], counts[name])
            queued.add_metric([target], counts["queued"])
        changes = counter("sht_notify_changes", "Event changes published (new, update, end)", ("type",))
        for kind, n in sorted(self.feed.stats.published.items()):
            changes.add_metric([kind], n)
        yield from families.values()
        yield queued
        yield changes
