"""The live relay: ``/live/{camera}`` on the store (or a relay-only process), same path and framing as a node.

One upstream WebSocket per camera, to its node's ``/live``, opened when the
first viewer arrives and closed ``LINGER_S`` after the last one leaves; every
access unit is fanned out to the relay's viewers with the node's own fan-out
(``shared/fanout.py``), re-using the very ``bytes`` received from the node, so
a node's cost does not grow with viewers. When the node goes away, each viewer
gets a ``status`` message (state ``down``) and stays connected; when the node
returns the relay sends a fresh ``init`` and frames resume from a keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from shared.backoff import Backoff
from shared.fanout import AccessUnit, FanOut
from shared.fmp4_live import Fmp4Stream, send_fmp4
from shared.protocol.errors import ProtocolError
from shared.protocol.live import FLAG_KEYFRAME, FRAME_HEADER, KNOWN_FLAGS, LiveInit, LiveStatus, parse_live_text
from shared.security import bearer
from shared.urls import ws_url

log = logging.getLogger(__name__)
LINGER_S = 5.0  # keep an upstream this long after its last viewer left: a page reload costs no reconnect
VIEWER_BACKLOG_S = 2.0  # as on the node (node/server.py)
MAX_UPSTREAM_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    url: str | None  # the node's base URL (http://host:port), None when it cannot be reached now
    reason: str = ""  # why not, for the viewers' status message


Locate = Callable[[str], Location]


class Upstream:
    """One camera's stream from its node, shared by all of this relay's viewers of that camera."""

    def __init__(self, relay: Relay, camera: str) -> None:
        self.relay, self.camera = relay, camera
        self.fanout = FanOut()  # a fresh one per upstream connection; ended when it drops
        self.init: LiveInit | None = None  # set while streaming
        self.status: LiveStatus | None = None  # why not streaming, once known
        self.fmp4: Fmp4Stream | None = None  # per connection, made on the first fMP4 viewer
        self.viewers = 0
        self.frames = 0
        self.connects = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._linger: asyncio.TimerHandle | None = None

    @property
    def streaming(self) -> bool:
        return self.init is not None

    def attach(self) -> None:
        self.viewers += 1
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay-{self.camera}")

    def detach(self) -> None:
        self.viewers -= 1
        if self.viewers == 0 and self._task is not None:
            self._linger = asyncio.get_running_loop().call_later(self.relay.linger_s, self.close)

    def close(self) -> None:
        """Drop the upstream (no viewers for a while, or the relay is stopping)."""
        self._linger = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._session_ended(None)

    async def changed(self) -> None:
        await self._changed.wait()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _session_ended(self, status: LiveStatus | None) -> None:
        was = self.init is not None
        self.init, self.fmp4 = None, None
        if status is not None:
            self.status = status
        self.fanout.end()  # viewers' subscriptions see the end, send the status and wait
        self.fanout = FanOut()
        if was or status is not None:
            self._pulse()

    async def _run(self) -> None:
        backoff = Backoff(0.25, 5.0)
        while True:
            where = self.relay.locate(self.camera)
            reason = where.reason
            if where.url is not None:
                url = f"{ws_url(where.url)}/live/{self.camera}"
                try:
                    reason = await self._stream(url, backoff)
                except (OSError, TimeoutError, websockets.WebSocketException, ProtocolError) as exc:
                    reason = f"lost the stream from {url}: {type(exc).__name__}: {exc}"
            log.info("relay %s: %s", self.camera, reason)
            self._session_ended(LiveStatus(self.camera, "down", reason))
            await asyncio.sleep(backoff.next_delay())

    async def _stream(self, url: str, backoff: Backoff) -> str:
        async with connect(url, additional_headers=bearer(self.relay.token()), ssl=self.relay.ssl_context,
                           max_size=MAX_UPSTREAM_MESSAGE, compression=None, open_timeout=5) as ws:
            self.connects += 1
            async for message in ws:
                if isinstance(message, str):
                    event = parse_live_text(message)
                    if isinstance(event, LiveInit):
                        self.init, self.status = event, None
                        backoff.reset()
                        self._pulse()
                    else:
                        return f"node says {event.state}: {event.reason}"
                    continue
                if self.init is None or len(message) < FRAME_HEADER.size:
                    raise ProtocolError("bad-frame", "frame before init, or shorter than its header")
                capture_us, flags = FRAME_HEADER.unpack_from(message)
                if flags & ~KNOWN_FLAGS:
                    raise ProtocolError("bad-frame", f"unknown flag bits {flags:#x}")
                self.frames += 1
                # The node's message is already the live frame: every viewer gets these very bytes.
                self.fanout.publish(AccessUnit(capture_us, bool(flags & FLAG_KEYFRAME), message))
        return f"the node closed the stream ({ws.close_reason or ws.close_code})"


class Relay:
    def __init__(self, locate: Locate, token: Callable[[], str | None] = lambda: None,
                 ssl_context: ssl.SSLContext | None = None, linger_s: float = LINGER_S) -> None:
        self.locate, self.token, self.ssl_context, self.linger_s = locate, token, ssl_context, linger_s
        self.upstreams: dict[str, Upstream] = {}
        self.closed = False

    async def serve(self, connection: ServerConnection, camera: str, fmp4: bool = False) -> None:
        """One viewer, until it leaves: init, frames, and a status whenever the node is away."""
        up = self.upstreams.get(camera)
        if up is None:
            up = self.upstreams[camera] = Upstream(self, camera)
        up.attach()
        peer = connection.remote_address
        sent_status: LiveStatus | None = None
        closed = asyncio.ensure_future(connection.wait_closed())  # a viewer may leave while we wait for the node
        try:
            while not self.closed:
                if up.init is None:
                    if up.status is not None and up.status != sent_status:
                        sent_status = up.status
                        await connection.send(up.status.serialize())
                    changed = asyncio.ensure_future(up.changed())
                    await asyncio.wait((changed, closed), return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
                    if closed.done():
                        return
                    continue
                init = up.init
                sub = up.fanout.subscribe(f"viewer {peer}", capacity=int(init.fps * VIEWER_BACKLOG_S) + 1)
                try:
                    if sent_status is not None:
                        await connection.send(LiveStatus(camera, "up", "stream resumed").serialize())
                        sent_status = None
                    if fmp4:
                        if up.fmp4 is None:
                            up.fmp4 = Fmp4Stream(init)
                        await send_fmp4(connection, sub, up.fmp4)
                    else:
                        await connection.send(init.serialize())
                        while (unit := await sub.get()) is not None:
                            await connection.send(unit.message)
                finally:
                    up.fanout.unsubscribe(sub)
        except websockets.ConnectionClosed:
            pass
        finally:
            closed.cancel()
            up.detach()

    def close(self) -> None:
        self.closed = True
        for up in self.upstreams.values():
            up.close()



def web_page(connection: ServerConnection) -> Response:
    """``GET /``: every camera live in a grid (store/web/index.html; it takes the token from its own URL)."""
    html = (resources.files("store") / "web" / "index.html").read_text()
    response = connection.respond(HTTPStatus.OK, html)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"  # the URL carries a token; keep it out of caches
    return response
