"""The store's ``notifications`` answer (store/notify/history.py) as the Notifications screen shows it: per target
(each webhook, MQTT) its counts and last error, and the recent notifications, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NAME_CHARS = 20  # a target's name in the tables: both fit 80 columns with room for the error


@dataclass(frozen=True)
class TargetView:
    target: str  # 'mqtt', 'webhook:<16 hex>'
    kind: str  # 'webhook', 'mqtt'
    name: str  # a webhook's URL without its path, the MQTT broker
    configured: bool
    queued: int
    delivered: int
    retried: int
    failed: int
    dropped: int
    last_error: str | None
    last_error_us: int | None

    @classmethod
    def from_json(cls, t: dict[str, Any]) -> TargetView:
        def count(key: str) -> int:
            return int(t.get(key) or 0)

        return cls(str(t["target"]), str(t.get("kind", "")), str(t.get("name", "")), bool(t.get("configured", True)),
                   count("queued"), count("delivered"), count("retried"), count("failed"), count("dropped"),
                   t.get("last_error"), t.get("last_error_us"))


@dataclass(frozen=True)
class NotificationView:
    target: str
    state: str  # queued, retrying, sent, failed, dropped
    at_us: int
    attempts: int
    event_id: int | None
    type: str | None
    camera: str | None
    label: str | None
    alert: bool | None
    error: str | None
    count: int
    what: str | None
    due_us: int | None

    @classmethod
    def from_json(cls, n: dict[str, Any]) -> NotificationView:
        return cls(str(n["target"]), str(n["state"]), int(n["at_us"]), int(n.get("attempts") or 0),
                   n.get("event_id"), n.get("type"), n.get("camera"), n.get("label"), n.get("alert"), n.get("error"),
                   int(n.get("count") or 1), n.get("what"), n.get("due_us"))


@dataclass(frozen=True)
class NotifyReport:
    targets: tuple[TargetView, ...]
    items: tuple[NotificationView, ...]
    kept: int  # how many ended notifications the store keeps

    @classmethod
    def from_api(cls, answer: dict[str, Any]) -> NotifyReport:
        return cls(tuple(TargetView.from_json(t) for t in answer.get("targets", [])),
                   tuple(NotificationView.from_json(n) for n in answer.get("items", [])), int(answer.get("kept", 0)))


def short_names(targets: Sequence[TargetView], chars: int = NAME_CHARS) -> dict[str, str]:
    """target -> what a narrow column shows: ``mqtt``, a webhook's ``host:port``, with its target's first hex
    digits where two webhooks share a host (Home Assistant's webhooks differ only by their path); at most
    ``chars`` characters, the host cut before the port."""
    hosts = {t.target: _host(t) for t in targets}
    shared = {h for h in hosts.values() if list(hosts.values()).count(h) > 1}
    names = {}
    for target, host in hosts.items():
        tag = f" #{target.split(':', 1)[-1][:4]}" if host in shared else ""
        names[target] = _fit(host, chars - len(tag)) + tag
    return names


def _fit(host: str, chars: int) -> str:
    if len(host) <= chars:
        return host
    name, colon, port = host.rpartition(":")
    if not colon or len(port) + 3 > chars:
        return host[: chars - 1] + "…"
    return name[: chars - len(port) - 2] + "…:" + port


def _host(t: TargetView) -> str:
    if t.kind != "webhook":
        return t.kind or t.target
    parts = urlsplit(t.name)
    return parts.netloc or t.target


def summary(report: NotifyReport, store: str) -> tuple[str, str]:
    """The line above the tables and its style (ok, warn, info)."""
    if not report.targets:
        return (f"{store} has no webhook or MQTT broker to notify: sht store --webhook URL or --mqtt URL, or "
                "the webhooks setting (docs/integrations.md)", "info")
    queued = sum(t.queued for t in report.targets)
    failed = sum(t.failed + t.dropped for t in report.targets)
    retrying = sum(1 for n in report.items if n.state == "retrying")
    parts = [f"{store}: {len(report.targets)} target{'s' if len(report.targets) != 1 else ''}",
             f"{queued} queued"]
    if retrying:
        parts.append(f"{retrying} retrying")
    if failed:
        parts.append(f"{failed} failed or dropped")
    return " · ".join(parts), "warn" if failed or retrying else "ok"


def what_text(n: NotificationView) -> str:
    """The type column: ``new``, ``end``…, or what a non-event item was (an MQTT topic), or a drop's count."""
    if n.type:
        return n.type
    if n.state == "dropped" and n.what is None:
        return f"{n.count} items"
    return (n.what or "-").rsplit("/", 1)[-1]


def next_target(current: str | None, targets: Sequence[TargetView]) -> str | None:
    """The list's filter after ``o``: all → each target in turn → all."""
    order = [t.target for t in targets]
    if current not in order:
        return order[0] if order else None
    at = order.index(current)
    return order[at + 1] if at + 1 < len(order) else None
