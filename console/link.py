"""The console's one connection to the store: a ``StoreClient`` that reconnects by itself.

``StoreLink.run`` is the app's long-lived worker. It connects, polls ``fleet``
every ``poll_interval`` seconds and reports what happens as messages to the app
(``StoreConnected``, ``StoreLost``, ``FleetUpdated``); when the store goes away it
backs off (``shared.backoff``) and tries again, for as long as the console runs.
Given several stores (``--store A,B``), each connection tries the whole list, the
store that answered last first and one that just failed last
(``shared.store_list.StoreRotation``).
Screens ask the store through ``StoreLink.call``, which fails at once with
``StoreUnavailable`` while there is no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from textual.message import Message

from shared.backoff import Backoff
from shared.protocol.errors import ProtocolError
from shared.protocol.fleet import FleetReport
from shared.query_client import NoStoreAnswers, StoreClient, StoreError
from shared.store_list import StoreRotation, parse_store_list

POLL_INTERVAL_S = 1.5
FLEET_TIMEOUT_S = 8.0  # a store that does not answer `fleet` in this long counts as lost
OPEN_TIMEOUT_S = 3.0
CLOSE_TIMEOUT_S = 1.0  # quitting waits at most this long for the store to see the close

LinkState = Literal["connecting", "connected", "reconnecting"]


class StoreUnavailable(StoreError):
    def __init__(self, url: str) -> None:
        super().__init__("unavailable", f"not connected to the store at {url}; the console is reconnecting")


@dataclass(frozen=True)
class LinkStatus:
    """What the header says about the store connection."""

    state: LinkState
    url: str
    reason: str = ""  # why the last connection failed
    attempt: int = 0  # failed attempts in a row
    retry_at: float | None = None  # loop time of the next attempt


class StoreConnected(Message):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class StoreLost(Message):
    def __init__(self, url: str, reason: str, attempt: int, retry_in: float, was_connected: bool) -> None:
        super().__init__()
        self.url, self.reason, self.attempt, self.retry_in = url, reason, attempt, retry_in
        self.was_connected = was_connected


class FleetUpdated(Message):
    def __init__(self, fleet: FleetReport) -> None:
        super().__init__()
        self.fleet = fleet


Post = Callable[[Message], object]


class StoreLink:
    def __init__(self, url: str, poll_interval: float = POLL_INTERVAL_S, backoff: Backoff | None = None,
                 token: str | None = None, ca: str | None = None) -> None:
        self.url = url  # one store, or several separated by commas
        self.rotation = StoreRotation(parse_store_list(url))
        self.token = token  # a viewer (or admin, to change settings) token for a store that wants one
        self.ca = ca  # CA file to verify a wss:// store with
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff(initial=0.5, maximum=10.0)
        self._client: StoreClient | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def call(self, method: str, *, on_chunk: Callable[[bytes], object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None, **params: Any) -> Any:
        """One request to the store; raises ``StoreError`` (``StoreUnavailable`` when not connected)."""
        client = self._client
        if client is None:
            raise StoreUnavailable(self.url)
        return await client.call(method, on_chunk=on_chunk, on_progress=on_progress, **params)

    async def close(self) -> None:
        """Close the connection now, as the app quits: the store sees the console leave at once."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing must never stop the console from quitting
                await asyncio.wait_for(client.__aexit__(None, None, None), CLOSE_TIMEOUT_S)

    @staticmethod
    async def _fleet(client: StoreClient) -> FleetReport:
        return FleetReport.from_json(await asyncio.wait_for(client.call("fleet"), FLEET_TIMEOUT_S))

    async def run(self, post: Post) -> None:
        """Connect, poll, reconnect; until cancelled."""
        was_connected = False
        loop = asyncio.get_running_loop()
        while True:
            store: str | None = None  # the store that answered, if one did
            try:
                async with StoreClient(self.rotation.order(loop.time()), open_timeout=OPEN_TIMEOUT_S,
                                       token=self.token, ca=self.ca) as client:
                    store = client.store
                    for skipped, error in client.skipped:
                        self.rotation.failed(skipped, loop.time(), error.message)
                    self._client = client
                    first = await self._fleet(client)
                    self.rotation.succeeded(store)
                    self.backoff.reset()
                    was_connected = True
                    post(StoreConnected(store))
                    post(FleetUpdated(first))
                    while True:
                        await asyncio.sleep(self.poll_interval)
                        try:
                            post(FleetUpdated(await self._fleet(client)))
                        except StoreError as exc:
                            if exc.code != "busy":
                                raise
                            # Other clients with this token fill the store's cap: the store is there, so
                            # skip this poll rather than call it lost.
            except NoStoreAnswers as exc:
                reason = exc.message
                for failed, error in exc.failures:
                    self.rotation.failed(failed, loop.time(), error.message)
            except StoreError as exc:
                reason = exc.message
            except ProtocolError as exc:
                reason = f"the store's fleet answer is not understood: {exc.message}"
            except TimeoutError:
                reason = f"the store did not answer within {FLEET_TIMEOUT_S:.0f} s"
            except OSError as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self._client = None
            if store is not None:  # it answered, then failed: with several stores, the next one goes first
                self.rotation.failed(store, loop.time(), reason)
            delay = self.backoff.next_delay()
            post(StoreLost(store or self.url, reason, self.backoff.attempts, delay, was_connected))
            was_connected = False
            await asyncio.sleep(delay)
