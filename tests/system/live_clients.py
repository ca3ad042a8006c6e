"""Live viewers for system tests: connect, record what arrives (and when), reconnect if asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from websockets.asyncio.client import connect

from shared.clock import now_us
from shared.protocol.live import decode_frame
from shared.security import bearer


@dataclass
class Viewer:
    url: str
    token: str | None = None
    reconnect: bool = False  # keep coming back (as a browser page does), e.g. through a load balancer
    texts: list[dict] = field(default_factory=list)
    frames: list[tuple[float, int, bool]] = field(default_factory=list)  # (monotonic, capture_us, keyframe)
    binaries: list[bytes] = field(default_factory=list)  # fMP4: the raw messages
    latency_ms: list[float] = field(default_factory=list)
    connects: int = 0
    fmp4: bool = False
    ssl_context: ssl.SSLContext | None = None
    _task: asyncio.Task | None = None

    def start(self) -> Viewer:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def states(self) -> list[str]:
        return [t.get("state", t["type"]) for t in self.texts]

    def frames_since(self, t: float) -> int:
        return sum(1 for at, _, _ in self.frames if at >= t)

    async def _run(self) -> None:
        while True:
            try:
                async with connect(self.url, additional_headers=bearer(self.token), max_size=2**24,
                                   compression=None, open_timeout=5, ssl=self.ssl_context) as ws:
                    self.connects += 1
                    async for message in ws:
                        if isinstance(message, str):
                            self.texts.append(json.loads(message))
                        elif self.fmp4:
                            self.binaries.append(message)
                            self.frames.append((time.monotonic(), 0, False))
                        else:
                            frame = decode_frame(message)
                            self.frames.append((time.monotonic(), frame.capture_us, frame.keyframe))
                            self.latency_ms.append((now_us() - frame.capture_us) / 1000)
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass
            if not self.reconnect:
                return
            await asyncio.sleep(0.2)


async def wait_until(check: Callable[[], bool], seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(step)
    return bool(check())


def start_fleet(processes, tmp: Path, nodes: int = 3, cameras: int = 2, fps: int = 5,  # type: ignore[no-untyped-def]
                size: str = "160x120") -> tuple[int, list[int], dict[str, str]]:
    """A store and ``nodes`` nodes with ``cameras`` cameras each (cam0, cam1, … across the fleet), auth on.

    Returns the store's port, the nodes' ports and the tokens; every node has announced itself and can
    check viewer tokens when this returns.
    """
    from store.admin.keys import KeyStore
    from tests.system.conftest import free_port, get_json, tokens, wait_for_health

    store_port, root = free_port(), tmp / "store"
    toks = tokens(root)
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port))
    wait_for_health(f"http://127.0.0.1:{store_port}", store)
    ports = []
    for n in range(nodes):
        port = free_port()
        token = toks["node"] if n == 0 else KeyStore(root).issue("node", f"node{n}", 3600)[0]
        cams = [a for c in range(cameras) for a in ("--camera", f"cam{n * cameras + c}=synthetic")]
        proc = processes.start(f"node{n}", "node", "--id", f"node{n}", "--host", "127.0.0.1", "--port", str(port),
                               "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp / f"spool{n}"),
                               "--size", size, "--fps", str(fps), *cams, token=token)
        wait_for_health(f"http://127.0.0.1:{port}", proc)
        ports.append(port)
    deadline = time.monotonic() + 20
    while True:
        states = get_json(f"http://127.0.0.1:{store_port}/health")["nodes"]
        if len(states) == nodes and all(s == "up" for s in states.values()):
            break
        assert time.monotonic() < deadline, f"nodes never all up at the store: {states}"
        time.sleep(0.2)
    return store_port, ports, toks


@dataclass
class SlowViewer:
    """A real WebSocket client that can stop reading (``pause``): a tiny receive buffer and a one-message queue,
    so the server feels it within a fraction of a second, as it would a viewer on a link that stalls."""

    url: str
    token: str | None = None
    inits: list[tuple[float, dict]] = field(default_factory=list)  # (monotonic, init) as read
    frames: list[tuple[float, str, bytes, bool]] = field(default_factory=list)  # (monotonic, stream, AU, keyframe)
    _reading: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task | None = None

    def start(self) -> SlowViewer:
        self._reading.set()
        self._task = asyncio.create_task(self._run())
        return self

    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def streams(self) -> list[str]:
        return [init.get("stream", "main") for _, init in self.inits]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        stream = "main"
        async with connect(self.url, sock=sock, additional_headers=bearer(self.token), max_queue=1,
                           max_size=2**24, compression=None, open_timeout=5) as ws:
            while True:
                await self._reading.wait()
                message = await ws.recv()
                if isinstance(message, str):
                    event = json.loads(message)
                    if event["type"] == "init":
                        stream = event.get("stream", "main")
                        self.inits.append((time.monotonic(), event))
                    continue
                frame = decode_frame(message)
                self.frames.append((time.monotonic(), stream, frame.data, frame.keyframe))
