"""Alert rules: which event changes are alerts (``alert: true`` on MQTT) and which go to webhooks.

Per camera, from its runtime settings (shared/settings.py): ``notify`` ``off`` (no alerts), ``motion`` (every
motion event), ``objects`` (the default: motion events the store's detector labelled, with one of
``notify_labels`` when that lists any); ``notify_zones`` (none: anywhere; else the event must lie in one of these
named zones); ``notify_cooldown_s`` (default 60): no second alert for the same camera and label within that many
seconds of the last (``motion`` mode counts every event as the label ``motion``). A ``loss`` event is never an
alert (its log line and /health say it).

An event is decided on each change until it is an alert; from then on it stays one (its ``end`` says
``alert: true`` too). A webhook is sent the change that made the event an alert (its ``new``, or the ``update``
that brought the label the rules wait for), the ``update`` that brings its first snapshot, and its ``end``, each
if the webhook's own filters (cameras, labels, zones) take it.

The functions here are pure: the time, the settings and the memory of past alerts are passed in. ``AlertDesk``
at the end is the store's glue: it reads each camera's settings (cached a few seconds, dropped when a setting
changes) and keeps the memory, in this process only (a restart forgets cooldowns).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from shared.settings import NOTIFY_MOTION, NOTIFY_OBJECTS, CameraSettings
from store.notify.changes import EventChange, EventObject

MOTION_LABEL = "motion"  # the cooldown's label for an alert of ``notify = motion``
REMEMBERED_ALERTS = 10_000  # events known to be alerts (they stay alerts)
SETTINGS_TTL_S = 5.0  # a camera's settings are read again after this (at once after a change on this store)


@dataclass(frozen=True)
class AlertRule:
    """One camera's alert settings."""

    notify: str = NOTIFY_OBJECTS
    labels: tuple[str, ...] = ()  # objects mode: empty = any label
    zones: tuple[str, ...] = ()  # empty = anywhere
    cooldown_s: float = 60.0

    @classmethod
    def of(cls, settings: CameraSettings) -> AlertRule:
        return cls(settings.notify, settings.notify_labels, settings.notify_zones, settings.notify_cooldown_s)


@dataclass
class AlertMemory:
    """What past decisions left: the last alert per (camera, label), and the events that are alerts."""

    last_alert_us: dict[tuple[str, str], int] = field(default_factory=dict)
    alerts: OrderedDict[int, str] = field(default_factory=OrderedDict)  # event id -> the label it alerted for


def alert_label(event: EventObject, rule: AlertRule) -> str | None:
    """The label this event would alert for under ``rule`` (cooldown aside), or None when it is no alert."""
    if event.kind != "motion" or rule.notify not in (NOTIFY_MOTION, NOTIFY_OBJECTS):
        return None
    if rule.zones and not set(event.zones) & set(rule.zones):
        return None
    if rule.notify == NOTIFY_MOTION:
        return MOTION_LABEL
    found = set(event.labels or ()) | ({event.label} if event.label is not None else set())
    wanted = found & set(rule.labels) if rule.labels else found
    if not wanted:
        return None
    return event.label if event.label in wanted else sorted(wanted)[0]


def decide(event: EventObject, rule: AlertRule, memory: AlertMemory, now_us: int) -> bool:
    """Is this state of the event an alert? Updates ``memory`` when it becomes one."""
    if event.id in memory.alerts:
        return True
    label = alert_label(event, rule)
    if label is None:
        return False
    key = (event.camera, label)
    last = memory.last_alert_us.get(key)
    if last is not None and now_us - last < rule.cooldown_s * 1e6:
        return False
    memory.last_alert_us[key] = now_us
    memory.alerts[event.id] = label
    while len(memory.alerts) > REMEMBERED_ALERTS:
        memory.alerts.popitem(last=False)
    return True


def raises_alert(change: EventChange) -> bool:
    """Is this the change that made its event an alert? (As far as this process knows: after a restart an alerted
    event's next change counts again; deliveries are at least once anyway.)"""
    return change.after.alert and (change.before is None or not change.before.alert)


def for_webhooks(change: EventChange) -> bool:
    """Does the change go to webhooks (before their own filters)? The alert's first change, the update that
    brings its first snapshot (the label is written a moment before the picture), and its end."""
    if not change.after.alert:
        return False
    first_snapshot = change.after.snapshot is not None and change.before is not None and change.before.snapshot is None
    return raises_alert(change) or change.type == "end" or first_snapshot


@dataclass(frozen=True)
class WebhookFilter:
    """A webhook's own filters; an empty one takes everything."""

    cameras: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()

    def takes(self, event: EventObject) -> bool:
        if self.cameras and event.camera not in self.cameras:
            return False
        if self.labels:
            found = set(event.labels or ()) | ({event.label} if event.label is not None else set())
            if not found & set(self.labels):
                return False
        return not self.zones or bool(set(event.zones) & set(self.zones))


def matching(change: EventChange, filters: Sequence[WebhookFilter]) -> list[int]:
    """Indexes of the webhooks (by their filters) a change goes to."""
    if not for_webhooks(change):
        return []
    return [i for i, f in enumerate(filters) if f.takes(change.after)]


# ---- the store's glue ----

Settings = Callable[[str], Awaitable[CameraSettings]]


class AlertDesk:
    """Decides ``alert`` for the change feed (``ChangeFeed(decide=desk.decide)``)."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = lambda: time.time_ns() // 1000) -> None:
        self.settings, self.clock = settings, clock
        self.memory = AlertMemory()
        self._rules: dict[str, tuple[float, AlertRule]] = {}  # camera -> (read at, rule)

    def forget(self, camera: str | None) -> None:
        """A setting changed: read the camera's (None: every camera's) settings again."""
        if camera is None:
            self._rules.clear()
        else:
            self._rules.pop(camera, None)

    async def rule(self, camera: str) -> AlertRule:
        now = time.monotonic()
        cached = self._rules.get(camera)
        if cached is None or now - cached[0] > SETTINGS_TTL_S:
            cached = (now, AlertRule.of(await self.settings(camera)))
            self._rules[camera] = cached
        return cached[1]

    async def decide(self, change: EventChange) -> bool:
        if change.after.id in self.memory.alerts:
            return True
        return decide(change.after, await self.rule(change.camera), self.memory, self.clock())
