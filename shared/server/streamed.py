"""HTTP answers too big to hold in memory (a day of footage as one MP4): a ``Streamed`` body the shell writes itself.

websockets answers ``process_request`` with a ``Response`` whose body is whole bytes, and the handshake (our
``process_request`` included) runs under its ``open_timeout`` (10 s): a download that takes minutes cannot be
written from inside it. So the shell **detaches** the connection instead (``detach``):

- the socket's asyncio transport gets a protocol of ours (``_Pipe``: flow control, and knowing when the client
  went), and the websockets connection gets a stand-in transport whose writes and aborts do nothing, and is told
  its connection was lost, so the handshake sends nothing and ends at once (websockets skips the response when
  the connection is no longer CONNECTING, and aborts the stand-in);
- a task of the shell's (``send``) writes the status line and headers, then each body chunk, waiting while the
  kernel's buffer is full (``pause_writing``/``resume_writing``: the same flow control over TLS), then closes.
  An answer that takes long to make (``Later``) is made in that task too, after the handshake has let go.

Invariants: at most one chunk of the body is held beyond the transport's write buffer (its high-water mark); a
client that goes away ends the body at its next chunk (its generator is closed: ``aclose`` runs its ``finally``),
never with a traceback in the log; ``Connection: close`` always (one answer per connection, as websockets does
for every non-101 answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Response

log = logging.getLogger(__name__)
# A client that takes no bytes for this long is cut off (browsers, ffplay and VLC resume with a Range request).
STALL_S = 300.0


@dataclass
class Streamed:
    """An HTTP answer whose body comes in chunks. ``headers`` should carry ``Content-Length`` when it is known
    (without it the body ends when the connection closes)."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: AsyncIterator[bytes]
    # The body bytes sent, appended when the answer ends (completely or not); for tests and metrics.
    sent: list[int] = field(default_factory=list)


@dataclass
class Later:
    """An answer that takes a while to make (a day of footage laid out before its first byte): the shell detaches
    the connection at once and awaits ``answer`` in its own task, outside websockets' handshake and its
    ``open_timeout``; a plain ``Response`` made then is sent as it would have been."""

    answer: Awaitable[Response | Streamed]


def streamed_of(response: Response) -> Streamed:
    """A plain answer as a streamed one (its whole body one chunk)."""

    async def whole() -> AsyncIterator[bytes]:
        yield bytes(response.body)

    return Streamed(response.status_code, list(response.headers.raw_items()), whole())


class _Pipe(asyncio.Protocol):
    """The transport's protocol once detached from websockets: flow control and the end of the connection."""

    def __init__(self) -> None:
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.lost = asyncio.Event()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        pass  # one answer per connection: whatever the client sends next is not read

    def eof_received(self) -> bool:
        return True  # a client that half-closes still gets the whole answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.can_write.set()  # wake a writer waiting on a full buffer

    async def drain(self, stall_s: float | None = None) -> bool:
        """Wait until the transport takes more; False once the client has gone, or has taken nothing for
        ``stall_s`` seconds (a paused player that never closes must not hold its file and layout for ever)."""
        if not self.can_write.is_set():
            try:
                await asyncio.wait_for(self.can_write.wait(), stall_s)
            except TimeoutError:
                log.info("streamed answer cut: the client took nothing for %.0f s (a player paused that long "
                         "asks again with a Range request when it resumes)", stall_s)
                return False
        return not self.lost.is_set()


class _Detached:
    """What the websockets connection holds instead of the socket's transport once ``detach`` took it over."""

    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return True

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def head(answer: Streamed) -> bytes:
    """Status line and headers of an answer."""
    try:
        phrase = HTTPStatus(answer.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {phrase}"]
    names = {name.lower() for name, _ in answer.headers}
    lines += [f"{name}: {value}" for name, value in answer.headers if name.lower() != "connection"]
    if "server" not in names:
        lines.append("Server: sht")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def detach(connection: ServerConnection) -> tuple[asyncio.Transport, _Pipe]:
    """Take the connection's socket away from websockets (see the module's docstring); returns it and its pipe."""
    transport = connection.transport
    pipe = _Pipe()
    transport.set_protocol(pipe)
    connection.transport = _Detached()  # type: ignore[assignment]
    connection.connection_lost(None)  # state CLOSED: websockets sends no response and aborts the stand-in
    if transport.is_closing():
        pipe.lost.set()
    return transport, pipe


async def send_later(transport: asyncio.Transport, pipe: _Pipe, later: Later, head_only: bool = False) -> int:
    """Make the answer, then ``send`` it."""
    try:
        answer = await later.answer
    except Exception as exc:  # noqa: BLE001 - a responder's bug: one line, and the client gets a 500
        log.warning("HTTP answer failed: %s", exc)
        body = b"the server failed to answer; its log says why\n"
        answer = Response(500, "Internal Server Error", Headers([("Content-Type", "text/plain; charset=utf-8"),
                                                                 ("Content-Length", str(len(body)))]), body)
    return await send(transport, pipe, answer if isinstance(answer, Streamed) else streamed_of(answer), head_only)


async def send(transport: asyncio.Transport, pipe: _Pipe, answer: Streamed, head_only: bool = False) -> int:
    """Write the answer to the transport; returns the bytes of body sent. Ends the body's generator either way.
    ``head_only``: a ``HEAD`` request, answered with the status line and headers alone (RFC 9110 §9.3.2).

    An answer written to its end (or cut by a failing body) is closed, so what is buffered still reaches the
    client; one cut short otherwise (the server closing, the client gone) is aborted: a client that stopped
    reading cannot hold the socket open by never taking the buffered rest (on Python 3.12+ the server's
    ``wait_closed`` waits for every connection, and would wait for it)."""
    sent = 0
    body = answer.body
    ended = False
    try:
        if pipe.lost.is_set():
            return 0
        transport.write(head(answer))
        if not head_only:
            async for chunk in body:
                # is_closing: a failed send closed it just now (connection_lost is only scheduled, not yet run)
                if not await pipe.drain(STALL_S) or transport.is_closing():
                    break
                if chunk:
                    transport.write(chunk)
                    sent += len(chunk)
                # Let the loop run: a TLS transport whose peer went drops writes without pausing, and only a turn
                # of the loop delivers connection_lost (a body that never awaits would otherwise be read to its end).
                await asyncio.sleep(0)
            else:
                ended = True
        else:
            ended = True
        if ended:
            await pipe.drain()
    except Exception as exc:  # noqa: BLE001 - the head is out: nothing to answer with but a short body
        # The body failed after the head went out (a segment deleted under the read, the storage gone): the client
        # sees a short answer (Content-Length says so); the log gets one line, not a traceback.
        log.warning("streamed answer failed after %d bytes: %s", sent, exc)
        ended = True
    finally:
        with contextlib.suppress(Exception):
            await body.aclose()  # type: ignore[attr-defined]
        if ended:
            transport.close()
        else:
            transport.abort()
        answer.sent.append(sent)
    return sent
