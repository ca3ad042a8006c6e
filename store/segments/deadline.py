"""A deadline on every request to an S3 endpoint.

The client's own limits (a connect timeout, a timeout per socket read, retries) do not bound a request: against
an endpoint that hangs (a frozen server, a link that drops packets) a PUT still waited after 60 s, and a HEAD
failed only after 31 s of read timeouts and retries (measured against a SeaweedFS stopped with SIGSTOP). A node
waits 30 s for its ack, and a store that holds a segment that long holds its ingest budget too. So each request,
retries included, gets ``deadline_s(size)``: 10 s, plus the time its body takes at 1 MiB/s (a 2 MB segment 12 s,
a 90 MB ten-minute one 100 s). One that runs out raises ``TimeoutError`` saying so, which the backend explains
as the endpoint not answering (ingest: ``storage-unavailable``, ``retry: true``).

An endpoint that is down (SIGKILLed, nothing listening) refuses the connection at once; no deadline is needed
for that one.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

REQUEST_DEADLINE_S = 10.0
MIN_TRANSFER_BYTES_PER_S = 1024 * 1024


def deadline_s(size: int = 0) -> float:
    """How long one request that sends ``size`` bytes may take, retries included."""
    return REQUEST_DEADLINE_S + size / MIN_TRANSFER_BYTES_PER_S


class DeadlinedClient:
    """An aiobotocore client whose API calls (what its methods return to be awaited) each run under
    ``deadline_s``; everything else (``get_paginator``, ``meta``) is the client's own."""

    def __init__(self, client: Any, endpoint: str, deadline: Callable[[int], float] = deadline_s) -> None:
        self._client = client
        self._endpoint = endpoint
        self._deadline = deadline

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            # aiobotocore's API methods are not marked as coroutine functions: what they return tells.
            result = attribute(*args, **kwargs)
            if not inspect.isawaitable(result):
                return result
            body = kwargs.get("Body")
            return self._bounded(name, result, len(body) if isinstance(body, (bytes, bytearray, memoryview)) else 0)

        return call

    async def _bounded(self, name: str, request: Awaitable[Any], size: int) -> Any:
        limit = self._deadline(size)
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await request
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TimeoutError(f"{name} got no answer from {self._endpoint} within {limit:.0f} s") from None
