"""An asyncio client for the store's query API, used by the console, the CLI and ``sht relay``.

A thin shell over ``shared.protocol.query.QueryClient``: one reader task routes
each reply to the request it answers, so many requests can be in flight on one
connection (the console asks for thumbnails while a timeline loads). ``call``
returns the result's JSON; callers read it with the typed results of
``shared.protocol.results`` and ``shared.protocol.fleet``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from shared.protocol.errors import ProtocolError
from shared.protocol.query import MAX_IN_FLIGHT_PER_CONNECTION, Chunk, Failure, Progress, QueryClient, Result
from shared.protocol.results import Thumbnail
from shared.security import bearer, client_ssl
from shared.store_list import is_tls, parse_store_list
from shared.urls import ws_url

MAX_REPLY_BYTES = 8 * 1024 * 1024


class StoreError(Exception):
    """The store refused a request; ``code`` and ``field`` say why and where. ``busy``: too many requests in
    flight with this token (the message names the cap); try again once others have answered."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code, self.message, self.field = code, message, field
        super().__init__(message)


class StoreUnreachable(StoreError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__("unreachable", f"cannot reach the store at {url} ({reason}); is `sht store` running "
                         "there, and is the URL right?")


class NoStoreAnswers(StoreUnreachable):
    """Every store of a list failed to connect; ``failures`` says how each did."""

    def __init__(self, failures: list[tuple[str, StoreError]]) -> None:
        self.failures = failures  # (store, why), in the order tried
        StoreError.__init__(self, "unreachable", f"none of the {len(failures)} stores answered: " + "; ".join(
            f"{ws_url(store)}/api: {_reason(error)}" for store, error in failures) + "; is `sht store` running "
            "there, and are the URLs right?")


def _reason(error: StoreError) -> str:
    return error.reason if isinstance(error, _ConnectFailed) else error.message


class _ConnectFailed(StoreUnreachable):
    """One store's connection failed (one reason, not yet the message for the user)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.reason = reason


class _Call:
    def __init__(self, on_chunk: Callable[[bytes], object] | None,
                 on_progress: Callable[[int, int], None] | None) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.on_chunk, self.on_progress = on_chunk, on_progress


class StoreClient:
    def __init__(self, url: str | Sequence[str], open_timeout: float = 5.0, close_timeout: float = 2.0,
                 token: str | None = None, ca: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        """``url``: a store, or several (``ws://A:8100,ws://B:8100`` or a sequence, docs/cluster.md): they are
        tried in that order and the first that answers serves this client (``store``, ``url``); ``skipped``
        says why the ones before it did not, as (store, error). ``StoreListError`` (a ``ValueError``) for a bad list.
        ``ca``: a CA file to verify a wss:// store with; or ``ssl_context``, one the caller made already."""
        self.stores = parse_store_list(url) if isinstance(url, str) else tuple(url)
        self.store = self.stores[0]
        self.url = ws_url(self.store) + "/api"
        self.skipped: list[tuple[str, StoreError]] = []
        self.headers = bearer(token)
        self.ca, self._given_ssl = ca, ssl_context
        self.open_timeout, self.close_timeout = open_timeout, close_timeout
        self._protocol = QueryClient()
        self._ws: ClientConnection | None = None
        self._calls: dict[int, _Call] = {}
        self._reader: asyncio.Task | None = None
        # Never more requests in flight than the store takes on one connection: more wait here, not ``busy``.
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT_PER_CONNECTION)

    async def __aenter__(self) -> StoreClient:
        failures: list[tuple[str, StoreError]] = []
        for store in self.stores:
            url = ws_url(store) + "/api"
            try:
                self._ws = await self._connect(url, store)
            except StoreError as exc:
                failures.append((store, exc))
                continue
            self.store, self.url, self.skipped = store, url, failures
            self._reader = asyncio.create_task(self._read())
            return self
        if len(failures) == 1:  # one store: its own error, as before there were lists
            raise failures[0][1]
        raise NoStoreAnswers(failures)

    async def _connect(self, url: str, store: str) -> ClientConnection:
        context = (self._given_ssl or client_ssl(url, self.ca)) if is_tls(store) else None
        try:
            return await connect(url, open_timeout=self.open_timeout, close_timeout=self.close_timeout,
                                 additional_headers=self.headers, ssl=context, max_size=MAX_REPLY_BYTES,
                                 compression=None)
        except websockets.InvalidStatus as exc:
            reason = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
            raise StoreError("refused", f"the store refused the connection ({exc.response.status_code}): "
                             f"{reason or 'no reason given'}") from None
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise _ConnectFailed(url, str(exc) or type(exc).__name__) from None

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()

    async def call(self, method: str, *, on_chunk: Callable[[bytes], object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None, **params: Any) -> Any:
        if self._ws is None:
            raise RuntimeError("use StoreClient in 'async with'")
        async with self._slots:
            return await self._call(self._ws, method, on_chunk, on_progress, params)

    async def snapshot(self, event_id: int) -> tuple[Thumbnail, bytes]:
        """An event's snapshot (the store detector's best frame of it, its object boxed): what it is, the JPEG.
        ``StoreError`` ``not-found`` when the event has none (the message says why)."""
        chunks: list[bytes] = []
        result = Thumbnail.from_json(await self.call("snapshot", event=event_id, on_chunk=chunks.append))
        jpeg = b"".join(chunks)
        if len(jpeg) != result.bytes:
            raise StoreError("protocol", f"the store sent {len(jpeg)} bytes of event {event_id}'s snapshot, its "
                             f"result says {result.bytes}")
        return result, jpeg

    async def _call(self, ws: ClientConnection, method: str, on_chunk: Callable[[bytes], object] | None,
                    on_progress: Callable[[int, int], None] | None, params: dict[str, Any]) -> Any:
        rid = self._protocol.request(method, **params)
        call = self._calls[rid] = _Call(on_chunk, on_progress)
        try:
            for message in self._protocol.data_to_send():
                await ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise StoreUnreachable(self.url, f"connection closed: {exc}") from None
        try:
            return await call.future
        finally:
            self._calls.pop(rid, None)

    async def _read(self) -> None:
        assert self._ws is not None
        error: StoreError
        try:
            async for message in self._ws:
                event = self._protocol.receive(message)
                if isinstance(event, Failure) and event.id is None:
                    error = StoreError(event.code, event.message, event.field)
                    for c in self._calls.values():
                        if not c.future.done():
                            c.future.set_exception(error)
                    continue
                call = self._calls.get(event.id) if event.id is not None else None
                if call is None:
                    continue
                if isinstance(event, Result):
                    call.future.set_result(event.result)
                elif isinstance(event, Failure):
                    call.future.set_exception(StoreError(event.code, event.message, event.field))
                elif isinstance(event, Chunk) and call.on_chunk is not None:
                    call.on_chunk(event.data)
                elif isinstance(event, Progress) and call.on_progress is not None:
                    call.on_progress(event.done, event.total)
            error = StoreUnreachable(self.url, "the store closed the connection")
        except websockets.ConnectionClosed as exc:
            error = StoreUnreachable(self.url, f"connection lost: {exc}")
        except ProtocolError as exc:
            error = StoreError("protocol", f"the store sent something this client does not understand: {exc}")
        for c in self._calls.values():
            if not c.future.done():
                c.future.set_exception(error)
