"""Streamed HTTP answers (shared/server/streamed.py) through real sockets: memory stays flat, a client that leaves
ends the body at once, a body that fails mid-way leaves one log line, and plain routes keep working beside them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator
from http import HTTPStatus

import pytest
from websockets.http11 import Response

from shared.auth import OPEN, AccessControl
from shared.httpjson import json_response
from shared.server.routes import RouteTable, http_route
from shared.server.shell import ServerShell
from shared.server.streamed import Later, Streamed

CHUNK = bytes(range(256)) * 256  # 64 KiB, the same object every time: what the server holds is the stream's own


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Streaming:
    def __init__(self) -> None:
        self.ended: list[int] = []  # chunks yielded, appended by each body's finally
        self.ended_event = asyncio.Event()
        self.answers: list[Streamed] = []
        self.shell = ServerShell(RouteTable([
            http_route("/big", OPEN, self.big),
            http_route("/broken", OPEN, self.broken),
            http_route("/later", OPEN, self.later),
            http_route("/health", OPEN, lambda c, _: json_response(c, HTTPStatus.OK, {"ok": True})),
        ]), AccessControl(None))

    async def body(self, chunks: int, fail_at: int | None = None) -> AsyncIterator[bytes]:
        n = 0
        try:
            while n < chunks:
                if n == fail_at:
                    raise OSError("the segment went away")
                n += 1
                yield CHUNK
        finally:
            self.ended.append(n)
            self.ended_event.set()

    def big(self, _connection, request) -> Streamed:
        chunks = int(request.path.partition("chunks=")[2] or 800)  # 800 × 64 KiB = 50 MiB
        answer = Streamed(200, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(chunks * len(CHUNK)))], self.body(chunks))
        self.answers.append(answer)
        return answer

    def later(self, connection, request) -> Later:
        async def make() -> Response | Streamed:
            await asyncio.sleep(0.3)  # work done after the handshake let go of the connection
            if "fail" in request.path:
                raise RuntimeError("a bug in the responder")
            if "json" in request.path:
                return json_response(connection, HTTPStatus.NOT_FOUND, {"why": "nothing there"})
            return Streamed(200, [("Content-Length", str(len(CHUNK)))], self.body(1))

        return Later(make())

    async def broken(self, _connection, _request) -> Streamed:
        return Streamed(200, [("Content-Length", str(10 * len(CHUNK)))], self.body(10, fail_at=3))


@pytest.fixture
async def server():
    s = Streaming()
    s.port = await s.shell.start("127.0.0.1", 0)
    yield s
    await s.shell.close()


async def get(port: int, target: str, limit: int | None = None, read_size: int = 65536) -> tuple[bytes, int]:
    """Head and the number of body bytes read (all, or ``limit`` and then the client hangs up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    n = 0
    while limit is None or n < limit:
        data = await reader.read(read_size)
        if not data:
            break
        n += len(data)
    writer.close()
    return head, n


async def test_fifty_megabytes_stream_without_being_held(server: Streaming) -> None:
    before = rss_bytes()
    head, n = await get(server.port, "/big")
    grown = rss_bytes() - before
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 52428800\r\n" in head and b"Connection: close\r\n" in head
    assert n == 50 * 1024 * 1024
    assert grown < 10 * 1024 * 1024, f"RSS grew {grown} bytes while streaming 50 MiB"
    assert server.ended == [800] and server.answers[0].sent == [n]
    # the server still answers plain routes, and another stream
    assert (await get(server.port, "/health"))[0].startswith(b"HTTP/1.1 200")
    assert (await get(server.port, "/big?chunks=3"))[1] == 3 * len(CHUNK)


async def test_a_client_that_leaves_ends_the_body(server: Streaming, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, n = await get(server.port, "/big", limit=1024 * 1024)
    assert n >= 1024 * 1024
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.ended_event.wait(), 5)
    assert server.ended, "the body's generator was not closed after the client left"
    assert server.ended[0] < 400, f"{server.ended[0]} chunks made for a client that read 16"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_a_body_that_fails_is_one_line_and_a_short_answer(server: Streaming,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    head, n = await get(server.port, "/broken")
    assert head.startswith(b"HTTP/1.1 200") and n == 3 * len(CHUNK)
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1 and "the segment went away" in failures[0].getMessage()
    assert not failures[0].exc_info


async def test_close_ends_streams_in_flight(server: Streaming) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await reader.read(65536)  # the stream has started; this client now stops reading
    await asyncio.wait_for(server.shell.close(), 5)
    assert server.ended and server.ended[0] < 800
    writer.close()


def sockets_open() -> int:
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


async def test_close_lets_go_of_a_client_that_stopped_reading() -> None:
    """Its socket is aborted, not left open until a buffer the client never takes is flushed (Python 3.12's
    ``Server.wait_closed`` waits for every connection: a close() there would wait for ever)."""
    s = Streaming()
    port = await s.shell.start("127.0.0.1", 0)
    before = sockets_open()  # the listener's
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(0.3)  # the server fills the socket's buffers and waits for this client, which never reads
    assert sockets_open() == before + 2
    await asyncio.wait_for(s.shell.close(), 5)
    await asyncio.sleep(0.1)
    # the listener closed, the client's own socket still open: the server's side must be gone
    assert sockets_open() == before, "the server's side of the stalled connection is still open"
    writer.transport.abort()


async def test_a_client_that_takes_nothing_for_too_long_is_cut_off(server: Streaming,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A paused player that never closes must not hold its file and layout for ever (STALL_S, 5 min; here 0.5 s)."""
    monkeypatch.setattr("shared.server.streamed.STALL_S", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.wait_for(server.ended_event.wait(), 10)  # the client never reads: the server gives up
    assert server.ended[0] < 800
    writer.transport.abort()


async def test_head_gets_the_head_alone(server: Streaming) -> None:
    for target in ("/big", "/later"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\n"), reply[:200]
        assert b"Content-Length: " in reply and b"Connection: close\r\n" in reply
    assert server.answers[0].sent == [0]


async def test_over_tls_the_same(tmp_path) -> None:
    from tests.system.test_security import make_certificates

    ca, cert, key = make_certificates(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=ca)
    s = Streaming()
    port = await s.shell.start("127.0.0.1", 0, server_ctx)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        writer.write(b"GET /big?chunks=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.read()
        writer.close()
        assert head.startswith(b"HTTP/1.1 200") and len(body) == 100 * len(CHUNK) and body[:len(CHUNK)] == CHUNK
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1024 * 1024)
        writer.transport.abort()
        s.ended_event.clear()
        s.ended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.ended_event.wait(), 5)
        assert s.ended and s.ended[0] < 400
    finally:
        await s.shell.close()


async def test_an_answer_made_later(server: Streaming, caplog: pytest.LogCaptureFixture) -> None:
    head, n = await get(server.port, "/later")
    assert head.startswith(b"HTTP/1.1 200") and n == len(CHUNK)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /later?json HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"Content-Type: application/json\r\n" in reply
    assert reply.endswith(b'{\n "why": "nothing there"\n}\n') and reply.count(b"Connection: close") == 1
    head, n = await get(server.port, "/later?fail")
    assert head.startswith(b"HTTP/1.1 500")
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1 and "a bug in the responder" in failures[0].getMessage() and not failures[0].exc_info
    # A client that leaves before the answer is made: nothing is sent, nothing logged.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.transport.abort()
    await asyncio.sleep(0.5)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
