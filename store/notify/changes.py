"""Event changes, as integrations see them: the event object, its changes (new / update / end), and the feed that
hands every change, in order, to whoever subscribed (webhooks, MQTT, later the console).

**The event object** (``EventObject.to_json``; docs/protocol.md "Event changes")::

    {"id": 41, "camera": "cam0", "node": "node0", "start": "2026-01-05T10:00:00.000000Z", "end": null,
     "kind": "motion", "label": "person", "score": 0.83, "box": [0.41, 0.22, 0.08, 0.35], "zones": [],
     "snapshot": "/snapshots/41.jpg", "alert": true, "labels": {"person": 1}, "motion_score": 0.31}

Times are ISO 8601 UTC; ``end`` is null while the event goes on. ``label``/``score``/``box`` are the best
confirmed object's (the store's detector), else ``label`` null and ``score``/``box`` the motion's. ``snapshot`` is
the store's URL path of its snapshot (``GET`` it with a viewer token), null until it has one. ``alert`` is what
the alert rules (store/notify/rules.py) made of it; once true it stays true for the event's later changes.

**A change** (``EventChange.to_json``): ``{"type": "new"|"update"|"end", "before": {...}|null, "after": {...}}``.
``new`` when the event starts (an open event reaches the store; a node older than open events sends only the
finished event: ``new`` then ``end`` at once); ``update`` when its row changes while it goes on (its end grows,
the detector labels it, its snapshot is stored or replaced); ``end`` when it closes or the store ends it (a newer
event of its camera came while it was open). Changes after ``end`` (a late label, the node's own close of an
event the store had ended) are ``update``. ``before`` is the event as this store process last published it, or
null (for ``new``, and for an event this process has not published since it started).

**For subscribers (the API of store/notify/mqtt, webhooks, the console)**::

    feed: ChangeFeed = store.changes            # one per store process, started by store/app.py
    subscription = feed.subscribe("mqtt")        # every change from now on, in order
    async for change in subscription:            # ends when the feed closes (the store stops)
        ...                                      # change.type, change.before, change.after (EventObject)
    feed.unsubscribe(subscription)               # to stop listening earlier
    feed.on_settings.append(callback)            # callback(camera | None) after a runtime setting changed
                                                 # through this store's API (None: a store-wide one)
    await feed.event(event_id)                   # the event object now (None: no such event), e.g. on start

A subscriber that puts changes in the outbox reads them in batches and puts with its journal mark
(store/notify/subscription.py): ``async for batch in subscription.batches(): await subscription.put(outbox,
batch, items)``. A subscription holds up to ``SUBSCRIBER_BACKLOG`` batches its reader has not taken yet; past
that the oldest are dropped, counted (``Subscription.dropped``) and logged: move changes to the durable outbox
(store/notify/outbox.py) and do the slow work from there. The fleet (nodes up/down, their health) is in memory
on the store (``store.server.fleet.nodes``); read it when needed, it costs nothing.

**Reporting (the parts that change an event row)** call, after their commit: ``ingested(notice)`` (event
ingest: ``store.ingest.events.EventNotice``) and ``labelled(event_id, seq)`` (the detector wrote labels or a
snapshot). Both are synchronous and never wait: a report is queued and one task reads the row and publishes, so
changes come out in the order they were reported. The store notifies the changes of the events it took in and
analysed: stores sharing an index each notify their own.

**Durability** (store/notify/journal.py): with a ``journal``, each change was appended to the change journal
before its commit (the reports carry its seq); the feed first replays the records some subscriber had not yet put
in its outbox when the store stopped (``start``), then publishes what is reported; a subscriber's mark moves
with its outbox puts. So a change a node was acknowledged for, or the detector committed, reaches the outbox also
across a ``kill -9``. Without one (tests), a change is in memory until a subscriber has put it in its outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from shared.clock import iso_utc
from shared.label_zones import bottom_centre, point_in_polygon
from shared.protocol.health import NamedZone
from store.notify.subscription import SUBSCRIBER_BACKLOG, Batch, Subscription

if TYPE_CHECKING:
    from store.notify.journal import ChangeJournal

__all__ = ["FAULT_PAUSE_AFTER_EVENT_COMMIT_S", "REMEMBERED", "SNAPSHOT_PATH", "SUBSCRIBER_BACKLOG", "ZONES_WAIT_S",
           "Batch", "Box", "ChangeFeed", "ChangeType", "Decide", "EventChange", "EventObject", "FeedStats",
           "Subscription", "ZoneNames", "read_event", "snapshot_path", "zones_containing"]

log = logging.getLogger(__name__)

ChangeType = Literal["new", "update", "end"]
Box = tuple[float, float, float, float]  # normalised x, y, w, h

REMEMBERED = 10_000  # events whose last published object is kept (``before``; which changes are news)
ZONES_WAIT_S = 5.0  # before a replay, how long the nodes' health (their named zones) is waited for
SNAPSHOT_PATH = "/snapshots/{id}.jpg"  # the store's HTTP route of an event's snapshot (store/notify/snapshots.py)


def _fault_pause_after_event_commit() -> float:
    """``SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT=SECONDS``, a test aid (docs/reliability.md): the feed waits that long
    before publishing each change reported to it (the row committed, the node acknowledged, nothing in the outbox
    yet), so a test can kill the store in that window. Read once; it only pauses."""
    text = os.environ.get("SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT", "").strip()
    try:
        seconds = float(text or 0)
    except ValueError:
        raise ValueError(f"SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT={text!r} is not a number of seconds; unset it") from None
    return max(0.0, seconds)


FAULT_PAUSE_AFTER_EVENT_COMMIT_S = _fault_pause_after_event_commit()


def snapshot_path(event_id: int) -> str:
    return SNAPSHOT_PATH.format(id=event_id)


@dataclass(frozen=True)
class EventObject:
    """One event as integrations see it (the module docstring shows its JSON)."""

    id: int
    camera: str
    node: str
    start_us: int
    end_us: int | None  # None while the event goes on
    kind: str  # motion | loss
    label: str | None
    score: float
    box: Box | None
    zones: tuple[str, ...]
    snapshot: str | None  # the store's URL path of its snapshot
    alert: bool = False
    labels: dict[str, int] | None = None  # confirmed labels -> the most seen at once; None: not analysed
    motion_score: float = 0.0

    @property
    def open(self) -> bool:
        return self.end_us is None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "camera": self.camera, "node": self.node, "start": iso_utc(self.start_us),
                "end": None if self.end_us is None else iso_utc(self.end_us), "kind": self.kind,
                "label": self.label, "score": round(self.score, 4),
                "box": None if self.box is None else [round(v, 4) for v in self.box],
                "zones": list(self.zones), "snapshot": self.snapshot, "alert": self.alert,
                "labels": None if self.labels is None else dict(self.labels),
                "motion_score": round(self.motion_score, 4)}

    def same_as(self, other: EventObject | None) -> bool:
        """Would a subscriber see the same JSON? (``alert`` aside: the rules decide it after the comparison.)"""
        return other is not None and replace(self, alert=False) == replace(other, alert=False)


@dataclass(frozen=True)
class EventChange:
    type: ChangeType
    before: EventObject | None
    after: EventObject

    @property
    def event_id(self) -> int:
        return self.after.id

    @property
    def camera(self) -> str:
        return self.after.camera

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "before": None if self.before is None else self.before.to_json(),
                "after": self.after.to_json()}

    def body(self) -> bytes:
        """The change as the JSON bytes webhooks and MQTT send (compact, keys in the object's order)."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


_EVENT_SQL = (
    "SELECT e.id, e.camera, e.node, e.start_us, e.end_us, e.kind, e.score, e.bbox_x, e.bbox_y, e.bbox_w, "
    "e.bbox_h, e.open, e.label, e.label_score, e.label_x, e.label_y, e.label_w, e.label_h, e.labels, "
    "(SELECT COUNT(*) FROM event_snapshots s WHERE s.event_id = e.id) FROM events e WHERE e.id = ?")

ZoneNames = Callable[[str, "Box | None"], tuple[str, ...]]  # (camera, box) -> the named zones the box lies in


def zones_containing(zones: Sequence[NamedZone] | None, box: Box | None) -> tuple[str, ...]:
    """The names of the zones the box's bottom-centre lies in (where an object touches the ground; the rule of
    label zones, shared/label_zones.py), in the node's order."""
    if not zones or box is None:
        return ()
    x, y = bottom_centre(box)
    return tuple(zone.name for zone in zones if point_in_polygon(x, y, zone.points))


async def read_event(conn: Any, event_id: int, zones: ZoneNames | None = None,
                     snapshot_base: str = "") -> EventObject | None:
    """The event object of an events row (``alert`` false: the rules decide it), or None for no such row.
    ``snapshot_base``: what goes before the snapshot's path (``sht store --public-url``; "" keeps the path)."""
    async with conn.execute(_EVENT_SQL, (event_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    (eid, camera, node, start_us, end_us, kind, score, bx, by, bw, bh, state, label, label_score,
     lx, ly, lw, lh, labels_text, snapshots) = row
    motion_box = None if bx is None else (float(bx), float(by), float(bw), float(bh))
    label_box = None if lx is None else (float(lx), float(ly), float(lw), float(lh))
    labelled = label is not None
    box = label_box if labelled else motion_box
    labels = None if labels_text is None else {str(k): int(v) for k, v in json.loads(labels_text).items()}
    return EventObject(
        id=int(eid), camera=str(camera), node=str(node), start_us=int(start_us),
        end_us=None if int(state) == 1 else int(end_us), kind=str(kind), label=None if label is None else str(label),
        score=float(label_score) if labelled and label_score is not None else float(score), box=box,
        zones=zones(str(camera), box) if zones is not None else (), snapshot=snapshot_base + snapshot_path(int(eid))
        if snapshots else None, labels=labels, motion_score=float(score))


# What decides ``alert`` on each change (store/notify/rules.py AlertDesk.decide): the change before alert is set.
Decide = Callable[[EventChange], Awaitable[bool]]


@dataclass
class _Report:
    event_id: int
    new: bool = False  # ingest inserted the row
    seq: int = 0  # its change journal record (0: none)
    replayed: bool = False  # read back from the journal at start


@dataclass
class FeedStats:
    published: dict[str, int] = field(default_factory=lambda: {"new": 0, "update": 0, "end": 0})
    failed_reads: int = 0
    replayed: int = 0  # journal records replayed at start


class ChangeFeed:
    def __init__(self, conn: Any, zones: ZoneNames | None = None, decide: Decide | None = None,
                 journal: ChangeJournal | None = None) -> None:
        """``conn``: the index connection the rows are read from. ``zones``: the named zones an event's box lies
        in. ``decide``: the alert rules (none: every ``alert`` false). ``journal``: the change journal (none: the
        changes are in memory only until a subscriber puts them in its outbox)."""
        self.conn, self.zones, self.decide, self.journal = conn, zones, decide, journal
        self.zones_known: Callable[[], bool] | None = None  # whether every node's named zones are known (replay)
        self.snapshot_base = ""  # sht store --public-url: snapshots as full URLs
        self.stats = FeedStats()
        self.on_settings: list[Callable[[str | None], None]] = []
        self._subscriptions: list[Subscription] = []
        self._reports: asyncio.Queue[_Report | None] = asyncio.Queue()
        self._last: OrderedDict[int, EventObject] = OrderedDict()  # event id -> as last published
        self._task: asyncio.Task | None = None
        self.closed = False

    # ---- subscribers ----

    def subscribe(self, name: str) -> Subscription:
        """With a journal, subscribe before ``start``: the replay is for those subscribed then."""
        subscription = Subscription(name, self, self.journal.subscribe(name) if self.journal is not None else 0)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def event(self, event_id: int) -> EventObject | None:
        found = await read_event(self.conn, event_id, self.zones, self.snapshot_base)
        last = self._last.get(event_id)
        return found if found is None or last is None else replace(found, alert=last.alert)

    # ---- reports (synchronous, from the event loop, after the change's commit) ----

    def ingested(self, notice: Any) -> None:
        """Event ingest changed rows: ``notice`` is a store.ingest.events.EventNotice."""
        ended = tuple(getattr(notice, "ended", ()))  # rows of the camera the store ended (open = 2)
        seqs = tuple(getattr(notice, "journal", ())) or (0,) * (len(ended) + 1)  # journal seqs of (*ended, row)
        for ended_id, seq in zip(ended, seqs, strict=False):
            self._reports.put_nowait(_Report(ended_id, seq=seq))
        self._reports.put_nowait(_Report(notice.event_id, new=notice.new, seq=seqs[-1]))

    def labelled(self, event_id: int, seq: int = 0) -> None:
        """The detector wrote the event's labels or its snapshot (``seq``: its journal record)."""
        self._reports.put_nowait(_Report(event_id, seq=seq))

    def settings_changed(self, camera: str | None) -> None:
        for callback in list(self.on_settings):
            try:
                callback(camera)
            except Exception:
                log.exception("notify: a settings listener failed")

    # ---- running ----

    def start(self) -> None:
        """Replay the journal (records some subscriber has not passed), then publish what is reported."""
        until = self.journal.last_seq if self.journal is not None else 0  # appended later: reported live
        self._task = asyncio.create_task(self._run(until), name="notify-changes")

    async def close(self) -> None:
        """Publish what was reported so far, then end every subscription (they still hand out what they hold)."""
        self.closed = True
        if self._task is not None:
            self._reports.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        for subscription in list(self._subscriptions):
            subscription.close()

    async def _run(self, replay_until: int) -> None:
        if self.journal is not None:
            await self._replay(self.journal, replay_until)
        while (report := await self._reports.get()) is not None:
            if FAULT_PAUSE_AFTER_EVENT_COMMIT_S:
                log.warning("SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT: event %d's change is committed, not yet queued for "
                            "delivery; pausing %.1f s (a test aid)", report.event_id, FAULT_PAUSE_AFTER_EVENT_COMMIT_S)
                await asyncio.sleep(FAULT_PAUSE_AFTER_EVENT_COMMIT_S)
            await self._take(report)

    async def _replay(self, journal: ChangeJournal, until: int) -> None:
        try:
            async for record in journal.replay(self.conn, until):
                if not self.stats.replayed:
                    await self._wait_for_zones()
                self.stats.replayed += 1
                if record.event_id is None:  # its row never committed (the node sends it again), or is gone
                    self._deliver(Batch((), record.seq, record.seq, replayed=True))
                else:
                    await self._take(_Report(record.event_id, record.new, record.seq, replayed=True))
        except Exception:  # the index or the outbox's disk: what is left is not replayed (logged)
            log.exception("notify: replaying the change journal failed after %d records", self.stats.replayed)
        if self.stats.replayed:
            log.info("notify: replayed %d event changes journalled before the store stopped and not yet queued for "
                     "every target", self.stats.replayed)

    async def _wait_for_zones(self) -> None:
        """A store just started knows no node's named zones until its first heartbeat (a moment after it links
        again): a change judged before would lie in no zone, and miss the alerts and webhooks filtered by zone."""
        if self.zones_known is None or self.zones_known():
            return
        log.info("notify: waiting up to %.0f s for the nodes' health (their named zones) before replaying",
                 ZONES_WAIT_S)
        deadline = asyncio.get_running_loop().time() + ZONES_WAIT_S
        # The fleet has no event to wait on; a heartbeat comes every 2 s a node.
        while not self.zones_known() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def _take(self, report: _Report) -> None:
        try:
            changes = await self._publish(report)
        except Exception:  # an index hiccup costs this change, not the feed
            self.stats.failed_reads += 1
            log.exception("notify: could not read event %d to publish its change", report.event_id)
            changes = []
        through = report.seq  # a replay goes through every record in order
        if self.journal is not None and not report.replayed:
            through = self.journal.reported(report.seq)
        self._deliver(Batch(tuple(changes), report.seq, through, report.replayed))

    def _deliver(self, batch: Batch) -> None:
        if not batch.changes and self.journal is None:
            return  # nothing to say, no mark to move
        for subscription in list(self._subscriptions):
            subscription.offer(batch)

    async def _publish(self, report: _Report) -> list[EventChange]:
        after = await read_event(self.conn, report.event_id, self.zones, self.snapshot_base)
        if after is None:
            return []  # deleted meanwhile (retention)
        before = self._last.get(report.event_id)
        if before is None and report.new:
            new = await self._emit("new", None, after)
            if after.open:
                return [new]
            return [new, await self._emit("end", new.after, after)]  # heard of only now: it starts and ends at once
        if after.same_as(before):
            return []
        if not after.open and (before is None or before.open):
            return [await self._emit("end", before, after)]
        return [await self._emit("update", before, after)]

    async def _emit(self, kind: ChangeType, before: EventObject | None, after: EventObject) -> EventChange:
        """The change, its ``alert`` decided, remembered as the event's latest (``before`` of its next change)."""
        change = EventChange(kind, before, after)
        if self.decide is not None:
            try:
                alert = await self.decide(change)
            except OSError as exc:  # IndexUnavailable: the camera's rules cannot be read now (one line, no traceback)
                log.warning("notify: cannot read camera %s's alert rules (%s); event %d is not an alert",
                            after.camera, exc, after.id)
                alert = False
            except Exception:
                log.exception("notify: the alert rules failed on event %d; not an alert", after.id)
                alert = False
            change = EventChange(kind, before, replace(after, alert=alert))
        self._last[after.id] = change.after
        self._last.move_to_end(after.id)
        while len(self._last) > REMEMBERED:
            self._last.popitem(last=False)
        self.stats.published[kind] += 1
        return change
