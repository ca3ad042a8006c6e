"""Webhooks: alerts POSTed as JSON, signed, from the durable outbox, at least once.

Where they go: ``sht store --webhook URL`` (repeatable) and the store-wide setting ``webhooks``
(shared/webhooks.py; read again when it changes on this store and every ``store_settings.POLL_S``). A URL in
both is one webhook: the setting's entry (its secret and filters) wins.

What goes: each alert's change that raised it and its end (store/notify/rules.py ``for_webhooks``), if the
webhook's filters take it: ``EventChange.body()``, ``{"type": ..., "before": ..., "after": ...}``. Headers:
``X-SHT-Signature: sha256=<hex HMAC-SHA256 of the body>`` (key: the webhook's secret, else the store's, as UTF-8
text), ``X-SHT-Event-Id``, ``X-SHT-Event-Type``, ``X-SHT-Delivery`` (the outbox item; the same on a retry:
receivers dedupe by it with the event id, not by the type, as an event may send two ``update``s).

How: one outbox target per URL (``webhook:<first 16 hex of its SHA-256>``), one sender task each, in order.
2xx: delivered. A timeout (``POST_TIMEOUT_S``), a connection error, 408, 429 or 5xx: tried again, backing off from
1 s doubling to 5 min (a ``Retry-After`` of up to an hour is honoured), for as long as the outbox holds it (its
bound drops the oldest). Any other status (4xx, a redirect) is logged and dropped (``failed``). A webhook taken
out of the settings has its queue discarded.

The store's secret: ``ROOT/webhook-secret`` (0600), made on the first start (``sht webhook secret --root DIR``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.webhooks import WebhookSpec, check_url, read_webhooks
from store.notify.changes import ChangeFeed, EventChange
from store.notify.outbox import Outbox, OutboxPut
from store.notify.rules import WebhookFilter, for_webhooks
from store.notify.subscription import Subscription

log = logging.getLogger(__name__)

SECRET_FILE = "webhook-secret"
TARGET_PREFIX = "webhook:"
POST_TIMEOUT_S = 10.0
RETRY_FIRST_S, RETRY_MAX_S, RETRY_AFTER_MAX_S = 1.0, 300.0, 3600.0
MAX_ANSWER_BYTES = 65536  # of a receiver's answer's body, read and ignored
USER_AGENT = "sht-cctv-webhook/1"
SIGNATURE_HEADER, EVENT_ID_HEADER = "X-SHT-Signature", "X-SHT-Event-Id"


# ---- the secret and the signature ----

def load_or_create_secret(root: Path) -> str:
    """The store's webhook secret, made (64 hex characters, mode 0600) if the root has none yet."""
    path = root / SECRET_FILE
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f".{SECRET_FILE}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # never replaces one made meanwhile (a store and `sht webhook secret` at once)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    text = path.read_text().strip()
    if not text:
        raise ValueError(f"{path} is empty: delete it and a new secret is made at the next start")
    return text


def signature(secret: str, body: bytes) -> str:
    """The ``X-SHT-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def target_of(url: str) -> str:
    return TARGET_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:16]


def describe_url(url: str) -> str:
    """A URL for logs and /health: scheme, host and port only (a path may hold a token: Slack's, Discord's)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str | None  # None: the store's
    filter: WebhookFilter
    source: str  # "flag" or "settings"

    @property
    def target(self) -> str:
        return target_of(self.url)


def webhooks_from(flags: Iterable[str], setting: Iterable[WebhookSpec]) -> dict[str, Webhook]:
    """target -> webhook, from ``--webhook`` URLs and the setting (the setting's entry wins for a URL in both)."""
    hooks = {target_of(url): Webhook(check_url(url), None, WebhookFilter(), "flag") for url in flags}
    for spec in setting:
        hooks[target_of(spec.url)] = Webhook(spec.url, spec.secret, WebhookFilter(spec.cameras, spec.labels,
                                                                                  spec.zones), "settings")
    return hooks


# ---- sending ----

@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retry_s: float | None  # not delivered: try again after this; None: give up
    detail: str


def judge(status: int, retry_after: str | None, attempts: int) -> Outcome:
    """What a response's status means for the item (``attempts``: failures before this one)."""
    if 200 <= status < 300:
        return Outcome(True, None, f"HTTP {status}")
    if status in (408, 429) or status >= 500:
        return Outcome(False, retry_delay(attempts, retry_after), f"HTTP {status}")
    hint = " (a redirect: give the webhook the URL it points to)" if 300 <= status < 400 else ""
    return Outcome(False, None, f"HTTP {status}{hint}")


def retry_delay(attempts: int, retry_after: str | None = None) -> float:
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after), RETRY_AFTER_MAX_S)
    ceiling = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(attempts, 20))
    return random.uniform(ceiling / 2, ceiling)


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               attempts: int = 0) -> Outcome:
    """One POST; its outcome (a timeout or connection error: try again)."""
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            # The status is the answer. A little of the body is read (a short one frees the connection for reuse);
            # a receiver streaming a huge or endless one must cost neither memory nor the POST's timeout.
            await response.content.read(MAX_ANSWER_BYTES)
            return judge(response.status, response.headers.get("Retry-After"), attempts)
    except TimeoutError:
        return Outcome(False, retry_delay(attempts), f"no answer within {POST_TIMEOUT_S:g} s")
    except aiohttp.ClientError as exc:
        return Outcome(False, retry_delay(attempts), f"{type(exc).__name__}: {exc}"[:300])


def headers_for(body: bytes, secret: str, event_id: object, change_type: object, delivery: object) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, SIGNATURE_HEADER: signature(secret, body),
            EVENT_ID_HEADER: str(event_id), "X-SHT-Event-Type": str(change_type), "X-SHT-Delivery": str(delivery)}


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S))


class Webhooks:
    """Routes the feed's alerts into the outbox, one target per webhook, and sends each target's items in order."""

    def __init__(self, outbox: Outbox, feed: ChangeFeed, secret: str, flags: Iterable[str] = (),
                 setting: Callable[[], Awaitable[Any]] | None = None, poll_s: float = 10.0) -> None:
        """``setting()``: the ``webhooks`` setting's value now (None: only ``flags``)."""
        self.outbox, self.feed, self.secret = outbox, feed, secret
        self.flags = tuple(check_url(url) for url in flags)
        self.setting, self.poll_s = setting, poll_s
        self.hooks: dict[str, Webhook] = webhooks_from(self.flags, ())
        self.last_config_error: str | None = None
        self._senders: dict[str, asyncio.Task] = {}
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self._reload = asyncio.Event()

    async def start(self) -> None:
        self._session = new_session()
        await self.reload()
        if self.flags:
            log.info("webhooks from --webhook: %s", ", ".join(describe_url(url) for url in self.flags))
        for target in self.outbox.targets():  # queues of webhooks no longer configured (a flag gone at restart)
            if self.last_config_error is not None:
                break  # the setting could not be read: its webhooks' queues stay until it can
            if target.startswith(TARGET_PREFIX) and target not in self.hooks:
                await self.outbox.discard(target, "its webhook is no longer configured")
        subscription = self.feed.subscribe("webhooks")
        self._tasks = [asyncio.create_task(self._route(subscription), name="webhooks-route"),
                       asyncio.create_task(self._watch_setting(), name="webhooks-settings")]
        self.feed.on_settings.append(lambda camera: self._reload.set() if camera is None else None)

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop sending. After the feed closed (``ChangeFeed.close``), the changes it published are put in the
        outbox first (for up to ``drain_s``): they are sent after the restart."""
        route = self._tasks[0] if self._tasks else None
        if route is not None and self.feed.closed:
            try:
                await asyncio.wait_for(asyncio.shield(route), drain_s)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("webhooks: stopping before every change was queued")
        for task in [*self._tasks, *self._senders.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._senders.values(), return_exceptions=True)
        self._tasks, self._senders = [], {}
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- configuration ----

    async def reload(self) -> None:
        """Read the setting again; start senders for new webhooks, stop and empty those taken out."""
        setting: list[WebhookSpec] = []
        hooks = self.hooks
        try:
            if self.setting is not None:
                setting = read_webhooks(await self.setting())
            hooks = webhooks_from(self.flags, setting)
            self.last_config_error = None
        except Exception as exc:  # the index away: keep what there is
            self.last_config_error = f"cannot read the webhooks setting: {exc}"
            log.warning("%s; keeping the webhooks configured so far", self.last_config_error)
        for target in set(self.hooks) - set(hooks):
            task = self._senders.pop(target, None)
            if task is not None:
                task.cancel()
            await self.outbox.discard(target, f"webhook {describe_url(self.hooks[target].url)} was removed")
        added = set(hooks) - set(self.hooks)
        self.hooks = hooks
        for target in sorted(hooks):
            if target not in self._senders and self._session is not None:
                self._senders[target] = asyncio.create_task(self._send(target), name=f"webhook-{target}")
        if added:
            log.info("webhooks: %s", ", ".join(describe_url(h.url) for h in hooks.values()))

    async def _watch_setting(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._reload.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._reload.clear()
            await self.reload()

    # ---- routing and sending ----

    async def _route(self, subscription: Subscription) -> None:
        async for batch in subscription.batches():
            try:  # the items and the router's journal mark, in one transaction
                await subscription.put(self.outbox, batch, self.items(batch.changes))
            except Exception:  # the outbox's disk: these changes are lost, the next may not be (the router lives on)
                log.exception("webhooks: could not queue %s; not sent", ", ".join(
                    f"the {c.type} of event {c.event_id}" for c in batch.changes) or "a journal mark")

    def items(self, changes: Iterable[EventChange]) -> list[OutboxPut]:
        """The outbox items the changes make: each alert change, once per webhook whose filters take it."""
        items: list[OutboxPut] = []
        for change in changes:
            if not for_webhooks(change):
                continue
            body = change.body()
            for target, hook in sorted(self.hooks.items()):
                if hook.filter.takes(change.after):
                    items.append((target, body, {"event_id": change.event_id, "type": change.type}))
        return items

    async def route(self, change: EventChange) -> None:
        """One change into the outbox (without a journal mark)."""
        items = self.items([change])
        if items:
            await self.outbox.put_many(items)

    async def _send(self, target: str) -> None:
        while (item := await self.outbox.next(target)) is not None:
            hook, session = self.hooks.get(target), self._session
            if hook is None or session is None:
                return
            headers = headers_for(item.payload, hook.secret or self.secret, item.meta.get("event_id"),
                                  item.meta.get("type"), item.id)
            try:
                outcome = await post(session, hook.url, item.payload, headers, item.attempts)
            except Exception as exc:  # a bug or an odd URL must cost a retry, not the sender
                log.exception("webhook %s: sending failed", describe_url(hook.url))
                outcome = Outcome(False, retry_delay(item.attempts), f"{type(exc).__name__}: {exc}"[:300])
            if outcome.delivered:
                await self.outbox.done(item.id)
            elif outcome.retry_s is not None:
                if item.attempts == 0 or item.attempts % 10 == 0:
                    log.warning("webhook %s: %s; trying again in %.1f s", describe_url(hook.url), outcome.detail,
                                outcome.retry_s)
                await self.outbox.retry_later(item.id, outcome.retry_s, outcome.detail)
            else:
                await self.outbox.drop(item.id, f"webhook {describe_url(hook.url)} refused event "
                                       f"{item.meta.get('event_id')}: {outcome.detail}")

    def health(self) -> list[dict[str, Any]]:
        return [{"target": target, "url": describe_url(hook.url), "source": hook.source,
                 "secret": "own" if hook.secret else "store",
                 "filters": {k: list(v) for k, v in (("cameras", hook.filter.cameras), ("labels", hook.filter.labels),
                                                      ("zones", hook.filter.zones)) if v}}
                for target, hook in sorted(self.hooks.items())]
