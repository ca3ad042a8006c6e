"""The live relay: ``/live/{camera}`` on the store (or a relay-only process), same path and framing as a node.

One upstream WebSocket per camera and stream (main, or the node's sub stream),
to its node's ``/live``, opened when the first viewer wanting it arrives and
closed ``LINGER_S`` after the last one leaves; every access unit is fanned out
to the relay's viewers with the node's own fan-out (``shared/fanout.py``),
re-using the very ``bytes`` received from the node, so a node's cost does not
grow with viewers. ``?stream=auto`` viewers hold both of a camera's upstreams
and are switched between them by the node's policy (``shared/adaptive.py``)
on their backlog here, so the node serves one main and one sub subscriber
however many viewers fall behind. When the node goes away, each viewer gets a
``status`` message (state ``down``) and stays connected; when the node returns
the relay sends a fresh ``init`` and frames resume from a keyframe.
"""

from __future__ import annotations

import asyncio
import functools
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

from shared.adaptive import AdaptivePolicy
from shared.backoff import Backoff
from shared.fanout import AccessUnit, FanOut
from shared.fmp4_live import Fmp4Clock, Fmp4Stream, LiveWriter
from shared.protocol.errors import ProtocolError
from shared.protocol.health import NodeHealth
from shared.protocol.live import FLAG_KEYFRAME, FRAME_HEADER, KNOWN_FLAGS, LiveInit, LiveStatus, parse_live_text
from shared.security import bearer
from shared.urls import ws_url

log = logging.getLogger(__name__)
LINGER_S = 5.0  # keep an upstream this long after its last viewer left: a page reload costs no reconnect
VIEWER_BACKLOG_S = 2.0  # as on the node (node/serve/server.py)
MAX_UPSTREAM_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    url: str | None  # the node's base URL (http(s)://host:port), None when it cannot be reached now
    reason: str = ""  # why not, for the viewers' status message
    substream: bool | None = None  # whether the camera has a sub stream (None: not known yet, ask the node)


Locate = Callable[[str], Location]


def substream_of(health: NodeHealth | None, camera: str) -> bool | None:
    """From a node's heartbeat health: does ``camera`` have a sub stream? None when the health does not say."""
    cam = health.cameras.get(camera) if health is not None else None
    return cam.substream is not None if cam is not None else None


class Upstream:
    """One camera's stream (main or sub) from its node, shared by all of this relay's viewers of it."""

    def __init__(self, relay: Relay, camera: str, stream: str) -> None:
        self.relay, self.camera, self.stream = relay, camera, stream
        self.fanout = FanOut()  # a fresh one per upstream connection; ended when it drops
        self.init: LiveInit | None = None  # set while streaming
        self.status: LiveStatus | None = None  # why not streaming, once known
        self.fmp4: Fmp4Stream | None = None  # per connection, made on the first fMP4 viewer
        self.holders = 0  # viewers that keep this upstream open (an auto viewer holds main and sub)
        self.viewers = 0  # viewers on this stream now (sent it, or waiting for it while the node is away)
        self.frames = 0
        self.connects = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._linger: asyncio.TimerHandle | None = None

    @property
    def streaming(self) -> bool:
        return self.init is not None

    @property
    def key(self) -> str:
        """``cam0`` for main, ``cam0/sub`` for the sub stream (health, logs)."""
        return self.camera if self.stream == "main" else f"{self.camera}/{self.stream}"

    def attach(self) -> None:
        self.holders += 1
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay-{self.key}")

    def detach(self) -> None:
        self.holders -= 1
        if self.holders == 0 and self._task is not None:
            self._linger = asyncio.get_running_loop().call_later(self.relay.linger_s, self.close)

    def close(self) -> None:
        """Drop the upstream (no viewers for a while, or the relay is stopping)."""
        self._linger = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._session_ended(None)

    def fmp4_stream(self, init: LiveInit) -> Fmp4Stream:
        if self.fmp4 is None:
            self.fmp4 = Fmp4Stream(init, self.relay.fmp4_clock(self.camera))
        return self.fmp4

    def changed(self) -> asyncio.Event:
        """Set at the next change of state (init, status, end). Taken before a viewer awaits it, so a change
        between the viewer's look at the state and its wait is not missed."""
        return self._changed

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
                url = f"{ws_url(where.url)}/live/{self.camera}" + ("" if self.stream == "main" else "?stream=sub")
                try:
                    reason = await self._stream(url, backoff)
                except ssl.SSLError as exc:  # e.g. a self-signed node certificate: say what fixes it
                    reason = (f"cannot verify the TLS certificate of {url}: {exc}; give the relay the CA that "
                              "signed the nodes' certificates (--node-ca FILE)")
                except (OSError, TimeoutError, websockets.WebSocketException, ProtocolError) as exc:
                    reason = f"lost the stream from {url}: {type(exc).__name__}: {exc}"
            log.info("relay %s: %s", self.key, reason)
            self._session_ended(LiveStatus(self.camera, "down", reason))
            await asyncio.sleep(backoff.next_delay())

    async def _stream(self, url: str, backoff: Backoff) -> str:
        async with connect(url, additional_headers=bearer(self.relay.token()), ssl=self.relay.node_ssl(url),
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
                 node_ca: str | None = None, linger_s: float = LINGER_S,
                 adaptive: tuple[float, float] | None = None) -> None:
        self.locate, self.token, self.linger_s = locate, token, linger_s
        self.node_ca = node_ca  # verifies wss:// nodes (their certificates are often from a private CA)
        self.adaptive = adaptive  # (behind_s, recover_s) for ?stream=auto; None: the policy's defaults
        self.upstreams: dict[tuple[str, str], Upstream] = {}  # (camera, main|sub)
        self._clocks: dict[str, Fmp4Clock] = {}
        self._node_ssl: ssl.SSLContext | None = None
        self.closed = False

    def node_ssl(self, url: str) -> ssl.SSLContext | None:
        """For wss:// nodes: the system's CAs, or ``node_ca``; made once (loading a CA file is not free)."""
        if not url.startswith("wss://"):
            return None
        if self._node_ssl is None:
            self._node_ssl = (ssl.create_default_context(cafile=self.node_ca) if self.node_ca
                              else ssl.create_default_context())
        return self._node_ssl

    def fmp4_clock(self, camera: str) -> Fmp4Clock:
        return self._clocks.setdefault(camera, Fmp4Clock())

    def upstream(self, camera: str, stream: str) -> Upstream:
        up = self.upstreams.get((camera, stream))
        if up is None:
            up = self.upstreams[(camera, stream)] = Upstream(self, camera, stream)
        return up

    def policy(self, fps: float) -> AdaptivePolicy:
        if self.adaptive is None:
            return AdaptivePolicy(fps)
        return AdaptivePolicy(fps, behind_s=self.adaptive[0], recover_s=self.adaptive[1])

    async def serve(self, connection: ServerConnection, camera: str, fmp4: bool = False, mode: str = "main") -> None:
        """One viewer, until it leaves: init, frames, a new init on every switch, a status whenever the node is away."""
        if mode != "main" and self.locate(camera).substream is False:
            mode = "main"  # as the node: a camera without a sub stream sends main (and costs one upstream, not two)
        ups = {s: self.upstream(camera, s) for s in (("main", "sub") if mode == "auto" else (mode,))}
        for up in ups.values():
            up.attach()
        current = "sub" if mode == "sub" else "main"
        ups[current].viewers += 1
        policy: AdaptivePolicy | None = None
        writer = LiveWriter(connection, fmp4)
        name = f"viewer {connection.remote_address}"
        sent_status: LiveStatus | None = None
        closed = asyncio.ensure_future(connection.wait_closed())  # a viewer may leave while we wait for the node

        def move_to(stream: str) -> str:
            ups[current].viewers -= 1
            ups[stream].viewers += 1
            return stream

        try:
            while not self.closed:
                up = ups[current]
                if up.init is None and policy is not None and current == "sub" and ups["main"].streaming:
                    current = policy.current = move_to("main")  # the sub stream went away: main beats nothing
                    continue
                if up.init is None:
                    change = up.changed()  # taken before anything awaits: a change from now on is seen
                    if up.status is not None and up.status != sent_status:
                        sent_status = up.status
                        await connection.send(up.status.serialize())
                    changed = asyncio.ensure_future(change.wait())
                    await asyncio.wait((changed, closed), return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
                    if closed.done():
                        return
                    continue
                init = up.init
                if mode == "auto" and policy is None:
                    policy = self.policy(init.fps)
                sub = up.fanout.subscribe(name, capacity=int(init.fps * VIEWER_BACKLOG_S) + 1)
                try:
                    if sent_status is not None:
                        await connection.send(LiveStatus(camera, "up", "stream resumed").serialize())
                        sent_status = None
                    await writer.begin(init, up.fmp4_stream(init) if fmp4 else None)
                    accept = functools.partial(self._switch, policy, ups=ups, current=current) if policy else None
                    if await writer.pump(sub, policy, accept or (lambda stream: True)) is not None:
                        assert policy is not None
                        log.info("%s of %s: switching to the %s stream", name, camera, policy.current)
                        current = move_to(policy.current)
                finally:
                    up.fanout.unsubscribe(sub)
        except websockets.ConnectionClosed:
            pass
        finally:
            closed.cancel()
            ups[current].viewers -= 1
            for up in ups.values():
                up.detach()

    @staticmethod
    def _switch(policy: AdaptivePolicy, want: str, *, ups: dict[str, Upstream], current: str) -> bool:
        """Follow the policy only to an upstream that streams what its name says (else stay, and say so to it)."""
        target = ups[want].init
        if target is None or target.stream != want:  # not there now, or a node that has no sub stream after all
            policy.current = current
            return False
        return True

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
