"""Each store of the console's list as its ``/health`` describes it (the Stores screen): up or not, its index and
segment storage, whether it holds the maintenance lease, and how far its off-site copy is behind.

``fetch_store_health`` is blocking (a worker thread's); ``StoreView.from_health`` and ``lease_line`` are pure.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from shared.store_list import same_store_key
from shared.urls import http_url

HEALTH_TIMEOUT_S = 3.0
REPLICA_TROUBLE = {"failing"}


@dataclass(frozen=True)
class ReplicaView:
    """``/health``'s ``replica`` (docs/cluster.md, "Off-site copy")."""

    state: str  # off, caught-up, copying, failing, standby
    seconds_behind: float | None = None
    bytes_behind: int | None = None
    objects_pending: int | None = None
    last_error: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class StoreView:
    url: str  # as the console was given it
    up: bool
    error: str | None = None  # why it did not answer
    index: str | None = None  # sqlite, postgresql
    index_error: str | None = None  # why it cannot read its index now (it refuses segments meanwhile)
    maintenance: bool | None = None  # holds the maintenance lease (on SQLite: always, alone on its index)
    segments: str | None = None  # files, s3
    segments_where: str | None = None
    replica: ReplicaView | None = None
    uptime_s: float | None = None
    stored: int | None = None  # segments taken since it started
    nodes: int | None = None  # nodes it knows

    @classmethod
    def down(cls, url: str, reason: str) -> StoreView:
        return cls(url, up=False, error=reason)

    @classmethod
    def from_health(cls, url: str, health: dict[str, Any]) -> StoreView:
        """A store's ``/health`` answer; fields an older store does not send stay None."""
        index = health.get("index") or {}
        segments = health.get("segments") or {}
        replica = health.get("replica")
        return cls(
            url, up=True, index=index.get("backend"), index_error=index.get("error"),
            maintenance=index.get("maintenance"),
            segments=segments.get("backend"), segments_where=segments.get("where"),
            replica=ReplicaView(replica.get("state", "?"), replica.get("seconds_behind"), replica.get("bytes_behind"),
                                replica.get("objects_pending"), replica.get("last_error"), replica.get("url"))
            if isinstance(replica, dict) else None,
            uptime_s=health.get("uptime_s"), stored=(health.get("ingest") or {}).get("stored"),
            nodes=len(health["nodes"]) if isinstance(health.get("nodes"), dict) else None)

    @property
    def shares_index(self) -> bool:
        """On an index other stores can share (PostgreSQL), where the lease means something."""
        return self.index is not None and self.index != "sqlite"

    @property
    def lease(self) -> str:
        """``holder``, ``standby``, ``own index`` (SQLite: alone, it does its own maintenance), or ``-``."""
        if not self.up or self.maintenance is None:
            return "-"
        if not self.shares_index:
            return "own index"
        return "holder" if self.maintenance else "standby"


def is_current(view: StoreView, connected_to: str | None) -> bool:
    """The console's link is on this store now."""
    return connected_to is not None and same_store_key(view.url) == same_store_key(connected_to)


def lease_line(views: Sequence[StoreView]) -> tuple[str, str]:
    """One line on the maintenance lease across the list, and its style (``ok``, ``warn``, ``info``)."""
    up = [v for v in views if v.up]
    shared = [v for v in up if v.shares_index]
    holders = [v for v in shared if v.maintenance]
    down = len(views) - len(up)
    gone = f"; {down} of {len(views)} not answering" if down else ""
    if not up:
        return f"no store answers ({len(views)} in the list)", "warn"
    if not shared:
        alone = "stores on SQLite share nothing: each keeps its own part of the footage" if len(up) > 1 \
            else "one store on its own SQLite index: it does its own maintenance"
        return alone + gone, "warn" if down else "info"
    if len(holders) == 1:
        return f"maintenance lease: {_short(holders[0].url)}{gone}", \
            "warn" if down else "ok"
    if not holders:
        return ("no store answering holds the maintenance lease: one takes it within 30 s of its holder's end"
                + gone), "warn"
    return (f"{len(holders)} stores hold a maintenance lease: they are on different PostgreSQL indexes" + gone,
            "warn")


def _short(url: str) -> str:
    return url.split("://", 1)[-1]


class HealthSource:
    """``source(url)``: that store's ``StoreView`` now, with the console's token and CA (blocking)."""

    def __init__(self, token: str | None = None, ca: str | None = None) -> None:
        self.token, self.ca = token, ca
        self._contexts: dict[str, ssl.SSLContext | None] = {}

    def __call__(self, url: str) -> StoreView:
        if url not in self._contexts:
            from shared.security import client_ssl

            try:
                self._contexts[url] = client_ssl(http_url(url), self.ca)
            except (OSError, ValueError) as exc:  # an unreadable CA file
                return StoreView.down(url, f"cannot verify its TLS: {exc}")
        return fetch_store_health(url, self.token, self._contexts[url])


def fetch_store_health(url: str, token: str | None = None, context: ssl.SSLContext | None = None,
                       timeout: float = HEALTH_TIMEOUT_S) -> StoreView:
    """GET the store's ``/health`` (blocking: call it from a worker thread); never raises."""
    request = Request(http_url(url) + "/health", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urlopen(request, timeout=timeout, context=context) as reply:  # noqa: S310 - the configured store
            body = json.loads(reply.read())
    except HTTPError as exc:
        # 503 with the store's /health: it runs but cannot reach its index (the body says why).
        try:
            body = json.loads(exc.read()) if exc.code == 503 else None
        except (OSError, ValueError):
            body = None
        if not isinstance(body, dict):
            return StoreView.down(url, f"HTTP {exc.code} {exc.reason}")
    except URLError as exc:
        return StoreView.down(url, str(exc.reason))
    except (OSError, ValueError) as exc:  # a timeout, a reset, an answer that is not JSON
        return StoreView.down(url, str(exc) or type(exc).__name__)
    if not isinstance(body, dict):
        return StoreView.down(url, "its /health answer is not a JSON object")
    return StoreView.from_health(url, body)
