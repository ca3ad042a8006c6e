"""The two ends ``just bench notify`` listens on, in the benchmark's own event loop: an MQTT subscriber (aiomqtt, as
Home Assistant or a script would be) on ``PREFIX/events``, and a webhook receiver (aiohttp on loopback) that checks
every request's signature. Each notes when an event's ``new`` came, on the wall clock (the same machine's clock the
node stamps an event's start with), keyed by (camera, start) so both ends and the store's index name an event
alike."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

EventKey = tuple[str, int]  # (camera, start_us)


def us_of_iso(text: str) -> int:
    """An event object's ``start`` (``2025-11-26T13:52:46.123456Z``) in microseconds since the epoch, exactly."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return calendar.timegm(moment.timetuple()) * 1_000_000 + moment.microsecond


def key_of(change: dict[str, Any]) -> EventKey:
    after = change["after"]
    return str(after["camera"]), us_of_iso(after["start"])


@dataclass
class Arrivals:
    """When each event's ``new`` first came (wall clock, µs), and what else came."""

    new_at_us: dict[EventKey, int] = field(default_factory=dict)
    types: Counter[str] = field(default_factory=Counter)  # every change seen, by type
    repeated_new: int = 0  # a second ``new`` for an event (at least once delivery allows it; counted, not timed)

    def note(self, change: dict[str, Any], at_us: int) -> None:
        kind = str(change.get("type"))
        self.types[kind] += 1
        if kind != "new":
            return
        key = key_of(change)
        if key in self.new_at_us:
            self.repeated_new += 1
        else:
            self.new_at_us[key] = at_us


def arrival_us() -> int:
    return time.time_ns() // 1000


class MqttSubscriber:
    """A QoS 1 subscription to ``PREFIX/events``; ``ready`` is set once the broker granted it."""

    def __init__(self, port: int, topic: str) -> None:
        self.port, self.topic = port, topic
        self.arrivals = Arrivals()
        self.ready = asyncio.Event()
        self.malformed = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run())
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait({self._task, ready}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped it
        if ready not in done:
            ready.cancel()
            raise RuntimeError(f"no MQTT subscription to {self.topic} on 127.0.0.1:{self.port} within {timeout_s} s")

    async def _run(self) -> None:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", self.port, identifier="sht-bench-notify") as client:
            await client.subscribe(self.topic, qos=1)
            self.ready.set()
            async for message in client.messages:
                at = arrival_us()
                try:
                    change = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    self.arrivals.note(change, at)
                except (ValueError, KeyError, TypeError):
                    self.malformed += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class WebhookReceiver:
    """POST /hook: the signature checked with the store's secret (a bad one is answered 401 and counted, and its
    change not noted), then 200."""

    PATH = "/hook"

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        self.secret: bytes | None = None  # set once the store has made it
        self.bad_signatures = 0
        self.port = 0
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.PATH}"

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post(self.PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        at = arrival_us()
        body = await request.read()
        if not self._signed(body, request.headers.get("X-SHT-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        try:
            self.arrivals.note(json.loads(body), at)
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="not an event change")
        return web.Response(status=200)

    def _signed(self, body: bytes, header: str) -> bool:
        if self.secret is None:
            return False
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(header, expected)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
