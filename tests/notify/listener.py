"""A subscriber in the tests (aiomqtt, like a Home Assistant or a script would be): every message it gets, in
order, with when it came. With ``session=True`` it keeps a persistent session (a fixed client id, QoS 1,
``clean_session`` false) and reconnects, so what the broker queued for it while it was away arrives too."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.time()

    @property
    def text(self) -> str:
        return self.payload.decode(errors="replace")


class Listener:
    def __init__(self, port: int, filters: list[str], identifier: str | None = None, session: bool = False,
                 username: str | None = None, password: str | None = None) -> None:
        self.port, self.filters, self.identifier, self.session = port, filters, identifier, session
        self.username, self.password = username, password
        self.messages: list[Received] = []
        self.connects = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.identifier,
                                          clean_session=not self.session, timeout=5, username=self.username,
                                          password=self.password) as client:
                    await client.subscribe([(f, 1) for f in self.filters])
                    self.connects += 1
                    self._ready.set()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else \
                            str(message.payload).encode()
                        self.messages.append(Received(str(message.topic), payload, bool(message.retain), time.time()))
            except aiomqtt.MqttError:
                if not self.session:
                    raise
                await asyncio.sleep(0.05)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Received | None:
        found = self.on(topic)
        return found[-1] if found else None

    async def wait(self, test: Callable[[list[Received]], object], within: float = 10.0, what: str = "") -> object:
        """Until ``test(messages)`` is truthy (its value), or AssertionError after ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            found = test(self.messages)
            if found:
                return found
            if time.monotonic() > deadline:
                seen = sorted({m.topic for m in self.messages})
                raise AssertionError(f"not within {within} s: {what or test}; topics seen: {seen}")
            await asyncio.sleep(0.02)

    async def wait_topic(self, topic: str, payload: str | None = None, within: float = 10.0,
                         after: int = 0) -> Received:
        """The latest message on ``topic`` (with ``payload``, if given) among those from index ``after`` on."""
        def found(messages: list[Received]) -> Received | None:
            for m in reversed(messages[after:]):
                if m.topic == topic and (payload is None or m.text == payload):
                    return m
            return None

        return await self.wait(found, within, f"{topic} = {payload}")  # type: ignore[return-value]
