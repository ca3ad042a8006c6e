"""``MqttBridge``: what ``sht store --mqtt`` runs. Event changes and state changes go through the durable outbox
(store/notify/outbox.py, target ``mqtt``) to the broker, in order; commands come back; Home Assistant discovery
configs and the retained state are republished in full on every (re)connect.

Paths:

- every event change (store/notify/changes.py) → the outbox: the change's JSON for ``PREFIX/events`` (QoS 1), then
  the retained state it changes (motion, counts, snapshot reference) → the drainer publishes the outbox's oldest
  item, waits for the broker's PUBACK, and only then removes it: a broker away, or a store restarted, delivers it
  later (at least once: a store killed between a PUBACK and the removal sends it again);
- runtime settings, read every ``SETTINGS_POLL_S`` and at once after a change through this store's API → the echo
  on ``.../state`` through the outbox; ``.../set`` commands → store/notify/mqtt/commands.py, one at a time, in the
  order they arrive;
- the fleet, read every ``WATCH_S``: node state (at most every 10 s a node, published directly: the outbox only
  holds changes worth replaying in order, and a node's latest state is republished on connect anyway), cameras
  added or gone (discovery configs published or removed);
- on connect: ``online``, the command subscriptions, every retained topic the store published before and wants no
  more cleared (an empty retained payload; the list is kept in ``ROOT/mqtt-retained.json`` so a camera deleted
  while the store was down is cleared too), every discovery config and every retained state; then the outbox; and
  once it has caught up after an outage, the retained state again (so a state whose change the bounded outbox
  dropped is right again).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiomqtt

from shared.settings import OBJECTS
from store.index.event_labels import event_snapshot
from store.index.settings import load as load_settings
from store.notify.changes import SUBSCRIBER_BACKLOG, ChangeFeed, EventChange, Subscription
from store.notify.mqtt import discovery
from store.notify.mqtt.commands import CommandRefused, apply_command, error_payload
from store.notify.mqtt.connection import BrokerLink, describe_error
from store.notify.mqtt.discovery import CameraEntities
from store.notify.mqtt.options import MqttOptions
from store.notify.mqtt.published import PublishedTopics
from store.notify.mqtt.state import Message, Retained, RetainedState, Snapshot
from store.notify.mqtt.topics import ONLINE, Topics
from store.notify.outbox import Outbox, OutboxItem, OutboxPut

log = logging.getLogger(__name__)

TARGET = "mqtt"  # the outbox target
WATCH_S = 1.0
SETTINGS_POLL_S = 5.0  # settings changed on another store sharing the index are seen within this
FOLLOWER_STOP_S = 5.0  # at a stop, how long the changes still coming may take to reach the outbox
SNAPSHOT_SCAN = 2000  # a camera's newest events looked at for each label's latest snapshot at start


class MqttBridge:
    def __init__(self, service: Any, options: MqttOptions, sw_version: str | None = None) -> None:
        """``service``: the store's store.notify.service.NotifyService: its ``feed`` (event changes), ``outbox``,
        ``conn`` (the index), ``root``, and once attached its ``server`` (``fleet``; ``api``, whose set_setting
        applies commands). Made and started by the service before the server is attached: the bridge subscribes
        to the feed at once (no change is missed) and does the rest once the server is there."""
        self.service, self.options = service, options
        self.feed: ChangeFeed = service.feed
        self.conn = service.conn
        self.sw_version = sw_version or _version()
        self.topics = Topics(options.prefix)
        self.link = BrokerLink(options, self.topics)
        self.state = RetainedState(self.topics)
        self.commands_applied = 0
        self.commands_refused = 0
        self._published = PublishedTopics(Path(service.root))  # retained topics on the broker, not cleared
        self._configs: dict[str, bytes] = {}  # discovery config topic -> payload, as wanted now
        self._sent_configs: dict[str, bytes] = {}  # ... as this connection published them
        self._cameras: dict[str, CameraEntities] = {}
        self._client: aiomqtt.Client | None = None  # while connected
        self._commands: asyncio.Queue[tuple[str, str, str, bytes, bool]] = asyncio.Queue()
        self._settings_due = 0.0
        self._subscription: Subscription | None = None
        self._ready = asyncio.Event()  # set once the cameras and their settings are read
        self._early: deque[EventChange] = deque(maxlen=SUBSCRIBER_BACKLOG)  # changes before that: state to make
        self._follower: asyncio.Task | None = None  # event changes -> the outbox
        self._task: asyncio.Task | None = None  # everything else

    @property
    def outbox(self) -> Outbox:
        return self.service.outbox  # type: ignore[no-any-return]

    @property
    def fleet(self) -> Any:
        return self.service.server.fleet

    @property
    def api(self) -> Any:
        return self.service.server.api

    # ---- running ----

    async def start(self) -> None:
        self._subscription = self.feed.subscribe(TARGET)  # before anything can change: no change is missed
        await self._published.load()
        self._follower = asyncio.create_task(self._follow_changes(self._subscription), name="mqtt-changes")
        self._task = asyncio.create_task(self._run(), name="mqtt")
        log.info("MQTT: publishing to %s (topics %s/...; Home Assistant discovery %s)", self.options.describe(),
                 self.topics.prefix, self.options.discovery_prefix or "off")

    async def _run(self) -> None:
        # NotifyService.attach (no event to wait on) comes right after the service started.
        while getattr(self.service, "server", None) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        while True:
            try:
                await self._refresh_cameras(queue=False)  # the state now: published on connect, not replayed
                await self._load_latest_snapshots()
                break
            except Exception:
                log.exception("MQTT: reading the cameras and their settings failed; trying again in 5 s")
                await asyncio.sleep(5.0)
        self.feed.on_settings.append(self._settings_changed)
        # The cameras are known: changes are turned into state from now on. Those that came meanwhile (already in
        # the outbox) are turned into it now, with no await before the set, so none is missed or done twice; the
        # state is published in full on connect, which comes after this.
        for change in self._early:
            self.state.event_changed(change)
        self._early.clear()
        self._ready.set()
        try:
            await _first_failure(self._watch(), self._run_commands(), self.link.run(self._session))
        except Exception as exc:  # a bug, or the outbox's disk failing: say so where it is seen
            log.exception("MQTT stopped: nothing more is published until the store restarts")
            self.link.state, self.link.last_error = "stopped", f"stopped by an error: {type(exc).__name__}: {exc}"
            raise

    async def stop(self) -> None:
        """Say ``offline`` (a clean goodbye: the broker does not publish the will then) and stop."""
        if self._settings_changed in self.feed.on_settings:
            self.feed.on_settings.remove(self._settings_changed)
        client = self._client
        if client is not None:
            try:
                await client.publish(self.topics.available, "offline", qos=1, retain=True, timeout=2.0)
            except aiomqtt.MqttError:
                pass
        # A change reported just before the stop (an event acknowledged, then SIGTERM) must still reach the
        # outbox: the feed publishes what it was told, then ends the subscriptions (NotifyService.stop closes it
        # again after this; a second close does nothing more), and the follower puts the rest in the outbox.
        await self.feed.close()
        if self._follower is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._follower), FOLLOWER_STOP_S)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("MQTT: changes not yet in the outbox at the stop were left (%d)",
                            self._subscription.backlog if self._subscription is not None else 0)
        for task in (self._task, self._follower):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._subscription is not None:
            self._subscription.close()
        self.link.state = "stopped"

    def health(self) -> dict[str, Any]:
        counts = self.outbox.counts(TARGET)
        return {**self.link.health(), "queued": counts.queued, "delivered": counts.delivered,
                "dropped": counts.dropped, "commands_applied": self.commands_applied,
                "commands_refused": self.commands_refused}

    # ---- the connection ----

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection, from connect to its failure (raises the MqttError that ended it)."""
        await client.publish(self.topics.available, ONLINE, qos=1, retain=True)
        await client.subscribe([(f, 1) for f in self.topics.command_filters()])
        await self._publish_everything(client)
        self._client = client
        await self._send_configs()  # a camera added while everything was being published
        catching_up = self.outbox.counts(TARGET).queued > 0
        try:
            await _first_failure(self._read_commands(client), self._drain(client, catching_up))
        finally:
            self._client = None

    async def _drain(self, client: aiomqtt.Client, catching_up: bool) -> None:
        while True:
            item = await self.outbox.next(TARGET, wait_s=1.0)
            if item is None:
                if self.outbox.closed:
                    return
                if catching_up:  # the outbox has caught up after an outage: the state as it is now, once more
                    catching_up = False
                    for message in self.state.current():
                        await self._publish(client, message)
                continue
            await self._deliver(client, item)

    async def _deliver(self, client: aiomqtt.Client, item: OutboxItem) -> None:
        meta, payload = item.meta, item.payload
        if "snapshot" in meta:
            found = await event_snapshot(self.conn, int(meta["snapshot"]))
            if found is None:  # the event went meanwhile (retention): nothing to show
                await self.outbox.done(item.id)
                return
            payload = found[3]
        try:
            await client.publish(meta["topic"], payload, qos=int(meta.get("qos", 1)), retain=bool(meta.get("retain")))
        except aiomqtt.MqttError as exc:
            await self.outbox.retry_later(item.id, 0.0, describe_error(exc, self.options))
            raise
        await self.outbox.done(item.id)
        if meta.get("retain"):
            await self._published.add({meta["topic"]})

    async def _publish_everything(self, client: aiomqtt.Client) -> None:
        """Clear what is no longer wanted, then every discovery config and retained state."""
        wanted = set(self._configs) | {m.topic for m in self.state.current()} | {self.topics.available}
        stale = self._published.stale(wanted)
        for topic in stale:
            await client.publish(topic, b"", qos=1, retain=True)
        if stale:
            log.info("MQTT: cleared %d retained topics no longer in use (cameras or labels gone)", len(stale))
            await self._published.remove(set(stale))
        self._sent_configs = dict(self._configs)
        for topic, payload in self._sent_configs.items():
            await client.publish(topic, payload, qos=1, retain=True)
        for message in self.state.current():
            await self._publish(client, message, note=False)
        await self._published.add(wanted)

    async def _publish(self, client: aiomqtt.Client, message: Retained, note: bool = True) -> None:
        if isinstance(message, Snapshot):
            found = await event_snapshot(self.conn, message.event_id)
            if found is None:
                return
            payload: bytes = found[3]
        else:
            payload = message.payload.encode()
        await client.publish(message.topic, payload, qos=1, retain=True)
        if note:
            await self._published.add({message.topic})

    async def _publish_now(self, topic: str, payload: bytes) -> None:
        """Retained, now if connected (if not, the next connect publishes it with everything else)."""
        client = self._client
        if client is None:
            return
        try:
            await client.publish(topic, payload, qos=1, retain=True)
        except aiomqtt.MqttError:
            return  # the session notices and reconnects
        if payload:
            await self._published.add({topic})
        else:
            await self._published.remove({topic})

    # ---- changes in ----

    async def _follow_changes(self, subscription: Subscription) -> None:
        """Every event change into the outbox, in order, at once (also while the cameras are being read at start:
        only their retained state waits for that); ends when the feed closes the subscription."""
        async for batch in subscription.batches():
            items: list[OutboxPut] = []
            for change in batch.changes:
                items.append((TARGET, change.body(), {"topic": self.topics.events, "qos": 1}))
                if self._ready.is_set():
                    items += self._items(self.state.event_changed(change))
                else:  # turned into state once the cameras are known (published on connect, with the rest)
                    self._early.append(change)
            try:  # the items and the bridge's journal mark, in one transaction
                await subscription.put(self.outbox, batch, items)
            except Exception:  # the outbox's disk: these changes are lost, the next may not be
                log.exception("MQTT: could not queue %s; not sent", ", ".join(
                    f"the {c.type} of event {c.event_id}" for c in batch.changes) or "a journal mark")

    def _items(self, messages: list[Retained]) -> list[OutboxPut]:
        """Retained messages as outbox items (a snapshot as a reference: its JPEG is read when it is published)."""
        items: list[OutboxPut] = []
        for message in messages:
            if isinstance(message, Snapshot):
                items.append((TARGET, b"", {"topic": message.topic, "qos": 1, "retain": True,
                                            "snapshot": message.event_id}))
            else:
                items.append((TARGET, message.payload.encode(), {"topic": message.topic, "qos": 1, "retain": True}))
        return items

    async def _queue(self, messages: list[Retained]) -> None:
        items = self._items(messages)
        if items:
            await self.outbox.put_many(items)

    def _settings_changed(self, camera: str | None) -> None:
        self._settings_due = 0.0  # the watcher reads them at its next turn

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                now = time.monotonic()
                if now >= self._settings_due or set(self.fleet.cameras()) != set(self._cameras):
                    await self._refresh_cameras(queue=True)
                for node in list(self.fleet.nodes.values()):
                    for message in self.state.node_state(node, now):
                        assert isinstance(message, Message)
                        await self._publish_now(message.topic, message.payload.encode())
            except Exception:  # an index hiccup costs one turn
                log.exception("MQTT: reading the fleet and settings failed; trying again")

    async def _refresh_cameras(self, queue: bool) -> None:
        """Read every camera's settings: their echo and count topics (queued when ``queue``), the discovery
        configs of cameras added or changed, and those of cameras gone removed."""
        self._settings_due = time.monotonic() + SETTINGS_POLL_S
        cameras = sorted(self.fleet.cameras())
        entities: dict[str, CameraEntities] = {}
        for camera in cameras:
            values = (await load_settings(self.conn, camera)).to_json()
            messages = self.state.camera_settings(camera, values)
            if queue:
                await self._queue(messages)
            node = self.fleet.node_of(camera) or "unknown"
            entities[camera] = CameraEntities(camera, node, tuple(values[OBJECTS]))
        for camera in set(self._cameras) - set(entities):
            log.info("MQTT: camera %s is gone from the fleet: its topics and Home Assistant entities are removed",
                     camera)
            for topic in self.state.forget_camera(camera):
                await self._publish_now(topic, b"")
        self._cameras = entities
        await self._update_configs()

    async def _update_configs(self) -> None:
        wanted: dict[str, bytes] = {}
        if self.options.discovery_prefix is not None:
            for camera_entities in self._cameras.values():
                for topic, payload in discovery.camera_configs(self.topics, self.options.discovery_prefix,
                                                               camera_entities, self.sw_version).items():
                    wanted[topic] = discovery.encode(payload)
        self._configs = wanted
        await self._send_configs()

    async def _send_configs(self) -> None:
        """While connected: the configs that differ from what this connection sent, and removals."""
        if self._client is None:
            return  # the next connect publishes them all
        sent = self._sent_configs
        for topic in sorted(set(sent) - set(self._configs)):
            await self._publish_now(topic, b"")
            sent.pop(topic, None)
        for topic, payload in list(self._configs.items()):
            if sent.get(topic) != payload:
                await self._publish_now(topic, payload)
                sent[topic] = payload

    async def _load_latest_snapshots(self) -> None:
        """Each camera's latest snapshot per label, from the index (a broker without persistence has lost them)."""
        for camera in self._cameras:
            async with self.conn.execute(
                    "SELECT e.id, e.label FROM (SELECT id, label, start_us FROM events WHERE camera = ? "
                    "ORDER BY start_us DESC LIMIT ?) e JOIN event_snapshots s ON s.event_id = e.id "
                    "WHERE e.label IS NOT NULL ORDER BY e.start_us DESC", (camera, SNAPSHOT_SCAN)) as cur:
                rows = await cur.fetchall()
            for event_id, label in rows:
                self.state.latest_snapshot(camera, str(label), int(event_id))

    # ---- commands ----

    async def _read_commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            parsed = self.topics.parse_command(topic)
            if parsed is None:
                continue
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if not payload:  # a retained command being cleared (an empty retained message): no command
                continue
            self._commands.put_nowait((topic, *parsed, payload, bool(message.retain)))

    async def _run_commands(self) -> None:
        while True:
            topic, camera, command, payload, retained = await self._commands.get()
            try:
                applied = await apply_command(self.api, camera, command, payload, retained)
            except CommandRefused as exc:
                self.commands_refused += 1
                log.warning("MQTT: %s %r refused, nothing changed: %s", topic, payload[:200], exc)
                await self.outbox.put(TARGET, error_payload(topic, payload, str(exc)).encode(),
                                      {"topic": self.topics.error(camera), "qos": 1})
                continue
            except Exception:
                self.commands_refused += 1
                log.exception("MQTT: %s failed", topic)
                await self.outbox.put(TARGET, error_payload(topic, payload, "the store failed to apply it; see its "
                                                            "log").encode(), {"topic": self.topics.error(camera),
                                                                              "qos": 1})
                continue
            self.commands_applied += 1
            log.info("MQTT: %s %s: %s -> %s (by mqtt; %s)", camera, applied.key, json.dumps(applied.old),
                     json.dumps(applied.new), "pushed to its node" if applied.pushed else "its node gets it when "
                     "it connects")
            await self._queue(self.state.camera_settings(camera, {applied.key: applied.new}))


async def _first_failure(*coroutines: Any) -> None:
    """Run the coroutines together until the first one ends; cancel the others; raise what ended it."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _version() -> str:
    try:
        return importlib.metadata.version("sht-cctv")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
