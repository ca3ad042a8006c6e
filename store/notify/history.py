"""The store's recent notifications: what the console's notifications screen and the ``notifications`` API method
list, per target (each webhook, ``mqtt``).

Two sources, merged newest first:

- what is still in the outbox (store/notify/outbox.py): ``queued``, or ``retrying`` once a delivery failed (its
  attempts, its last error, when it is tried next). Read from the outbox's file when asked, so what waited across a
  store restart is listed too;
- a bounded in-memory record of the last ``HISTORY_SIZE`` items that ended, told by ``Outbox.on_finished``:
  ``sent``, ``failed`` (given up on: a webhook's 4xx) and ``dropped`` (the target's queue was full, or its webhook
  was removed; many at once are one entry with their ``count``). It starts empty with each process, as the
  counters do (they count from the process's start too).

Only event changes are listed one by one (``{"type", "before", "after"}``: every webhook item, and MQTT's
``PREFIX/events`` messages); MQTT's retained state and echoes, three or so for each change, are counted in the
target's counts and listed only when one fails.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from store.notify.outbox import Outbox, OutboxItem, item_of

HISTORY_SIZE = 200  # ended items kept, all targets of the store together
CHANGE_PREFIX = b'{"type":"'  # how every event change's JSON starts (EventChange.body(): compact, type first)
STATES = ("queued", "retrying", "sent", "failed", "dropped")


class UnknownTarget(LookupError):
    """A target the store has never had: the message names those it has."""


@dataclass(frozen=True)
class Notification:
    target: str
    state: str  # one of STATES
    at_us: int  # when it reached its state (queued, retrying: when it was put in the outbox)
    put_us: int | None = None  # when it was put in the outbox (None: a drop of many)
    attempts: int = 0  # deliveries tried (sent: including the one that worked)
    event_id: int | None = None
    type: str | None = None  # new, update, end (None: not an event change)
    camera: str | None = None
    label: str | None = None
    alert: bool | None = None
    error: str | None = None  # failed, dropped: why; sent, retrying: the last failed try's
    due_us: int | None = None  # retrying: when it is tried next
    count: int = 1  # dropped: how many at once
    what: str | None = None  # not an event change: its MQTT topic, or what it was

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _now_us() -> int:
    return time.time_ns() // 1000


def describe(item: OutboxItem, state: str, at_us: int, error: str | None) -> Notification | None:
    """The item as a list entry; None for an item that is no event change and did not fail."""
    base = Notification(item.target, state, at_us, item.put_us, item.attempts, error=error)
    change = _change(item.payload)
    if change is None:
        if state != "failed":
            return None
        return replace(base, what=str(item.meta.get("topic") or item.meta.get("type") or "?")[:200])
    after: dict[str, Any] = change["after"] if isinstance(change.get("after"), dict) else {}
    event_id = after.get("id", item.meta.get("event_id"))
    return replace(base, event_id=event_id if isinstance(event_id, int) else None,
                   type=str(change.get("type")), camera=_text(after.get("camera")), label=_text(after.get("label")),
                   alert=after.get("alert") if isinstance(after.get("alert"), bool) else None)


def _change(payload: bytes) -> dict[str, Any] | None:
    if not payload.startswith(CHANGE_PREFIX):
        return None
    try:
        change = json.loads(payload)
    except ValueError:
        return None
    return change if isinstance(change, dict) and change.get("type") in ("new", "update", "end") else None


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


class NotifyHistory:
    """``finished`` is the outbox's ``on_finished``; ``report`` answers the API's ``notifications``."""

    def __init__(self, size: int = HISTORY_SIZE) -> None:
        self.ended: deque[Notification] = deque(maxlen=size)

    def finished(self, state: str, target: str, item: OutboxItem | None, error: str | None, count: int) -> None:
        now = _now_us()
        if item is None:  # many dropped at once: their rows are gone, one entry says how many and why
            self.ended.append(Notification(target, state, now, error=error, count=count))
            return
        try:
            entry = describe(item, state, now, error)
        except Exception as exc:  # an odd payload must never cost the sender its delivery
            entry = Notification(target, state, now, item.put_us, error=f"{error or ''} (unreadable item: {exc})")
        if entry is not None:
            # The outbox counts failed tries only; the list says how many were made, the last one included.
            self.ended.append(replace(entry, attempts=item.attempts + 1) if state != "dropped" else entry)

    async def report(self, outbox: Outbox | None, names: Mapping[str, str], target: str | None = None,
                     limit: int = 100) -> dict[str, Any]:
        """``targets``: each target's name (a webhook's URL without its path, the MQTT broker) and counts;
        ``items``: at most ``limit`` notifications, newest first. ``names``: the targets configured now."""
        counts = outbox.health() if outbox is not None else {}
        known = sorted(set(counts) | set(names))
        if target is not None and target not in known:
            raise UnknownTarget(f"no notify target {target!r} on this store (its targets: "
                                f"{', '.join(known) or 'none: no webhook or MQTT configured'})")
        targets = [{"target": t, "kind": t.split(":", 1)[0], "name": names.get(t, "(no longer configured)"),
                    "configured": t in names, **counts.get(t, {"queued": 0, "published": 0, "delivered": 0,
                                                               "retried": 0, "dropped": 0, "failed": 0,
                                                               "last_error": None, "last_error_us": None})}
                   for t in known if target is None or t == target]
        pending = await self.pending(outbox, target, limit) if outbox is not None else []
        ended = [n for n in reversed(self.ended) if target is None or n.target == target][:limit]
        items = sorted([*pending, *ended], key=lambda n: n.at_us, reverse=True)[:limit]
        return {"targets": targets, "items": [n.to_json() for n in items], "kept": self.ended.maxlen}

    @staticmethod
    async def pending(outbox: Outbox, target: str | None, limit: int) -> list[Notification]:
        """The newest event changes still in the outbox (read through its connection, as its ``peek`` does)."""
        where, args = "substr(payload, 1, ?) = ?", [len(CHANGE_PREFIX), CHANGE_PREFIX]
        if target is not None:
            where += " AND target = ?"
            args.append(target)
        sql = (f"SELECT id, target, payload, meta, put_us, attempts, due_us, last_error FROM outbox WHERE {where} "
               "ORDER BY id DESC LIMIT ?")
        async with outbox.conn.execute(sql, (*args, limit)) as cur:
            rows = await cur.fetchall()
        out = []
        for row in rows:
            item = item_of(row)
            state = "retrying" if item.attempts else "queued"
            entry = describe(item, state, item.put_us, item.last_error)
            if entry is not None:
                out.append(replace(entry, due_us=item.due_us or None) if item.attempts else entry)
        return out
