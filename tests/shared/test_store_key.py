"""``fetch_store_key``: retried with backoff through refusals and garbage until the key arrives."""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import public_pem
from shared.backoff import Backoff
from shared.store_key import fetch_store_key


async def test_retries_until_the_store_sends_a_key(caplog):
    key = Ed25519PrivateKey.generate().public_key()
    answers = [(503, b"starting"), (200, b"not a key"), (200, public_pem(key))]
    asked: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append((await reader.readline()).decode().split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        status, body = answers.pop(0)
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        pem, got = await asyncio.wait_for(
            fetch_store_key(f"ws://127.0.0.1:{port}", None, Backoff(0.01, 0.02), "viewers wait"), 10)
    assert pem == public_pem(key) and public_pem(got) == pem
    assert asked == ["/key"] * 3
    warnings = [r.getMessage() for r in caplog.records if "cannot get the store's key" in r.getMessage()]
    assert len(warnings) == 2 and all("viewers wait; retrying" in w for w in warnings)
