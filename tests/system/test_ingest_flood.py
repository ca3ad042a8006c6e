"""Issue 14, row 7: oversize and garbage ingest messages with node tokens, against a real store on loopback.

Before the ingest byte budget, each 256 MiB message was buffered whole before it
was refused (store RSS 490 → 1,656 MiB). Now garbage is refused from its first
frame, a frame over 1 MiB closes the connection, and a well-formed header's
bytes are reserved from a bounded budget before they are read: the store stays
small, every attacker hears why, and the node recording beside them keeps
getting its segments acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import psutil
import websockets
from websockets.asyncio.client import connect

from shared.protocol.ingest import MAX_FRAGMENT_BYTES, PREFIX, SegmentHeader
from shared.security import bearer
from store.admin.keys import KeyStore
from tests.system.conftest import get_json
from tests.system.test_security import start_system

MIB = 1024 * 1024
RSS_LIMIT = 400 * MIB


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.process, self.peak = psutil.Process(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _declared_garbage(node: str, size: int) -> list[bytes]:
    """A well-formed header declaring ``size`` bytes, then that many zeros, in 1 MiB frames."""
    header = SegmentHeader(node=node, camera="cam7", start_us=10**15, end_us=10**15 + 10**6, frames=10,
                           bytes=size, sha256="0" * 64)
    head = json.dumps(header.to_json()).encode()
    first = PREFIX.pack(b"SHTS", len(head)) + head
    zeros = bytes(MAX_FRAGMENT_BYTES)
    return [first] + [zeros] * (size // MAX_FRAGMENT_BYTES)


async def _attack(url: str, token: str, message: bytes | list[bytes], replies: int | None = None) -> list[str]:
    """What the store answered: its replies' codes, then how it closed (if it did within 30 s). With ``replies``:
    after that many, "open" if the connection still answers a ping (the store refused the message, not the
    connection), rather than waiting out the 30 s."""
    got: list[str] = []
    ws = await connect(url, additional_headers=bearer(token), max_size=MIB, close_timeout=2, compression=None)
    sending = asyncio.create_task(ws.send(message))
    try:
        async with asyncio.timeout(30):
            while replies is None or len(got) < replies:
                got.append(json.loads(await ws.recv())["code"])
            await sending
            await (await ws.ping())
            got.append("open")
    except websockets.ConnectionClosed as exc:
        got.append(f"closed {exc.rcvd.code if exc.rcvd else None}: {exc.rcvd.reason if exc.rcvd else ''}")
    except TimeoutError:
        pass
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await sending
        if not ws.transport.is_closing():
            ws.transport.abort()  # not close(): a send cancelled mid-message leaves nothing to close cleanly
    return got


def test_ingest_floods_are_refused_without_buffering_and_the_node_keeps_uploading(processes, tmp_path):
    store_port, node_port, root, toks = start_system(processes, tmp_path)
    other = KeyStore(root).issue("node", "node1", 3600)[0]  # a second node's token: the per-node cap is 4
    url = f"ws://127.0.0.1:{store_port}/ingest"
    node_health = f"http://127.0.0.1:{node_port}/health"
    deadline = time.monotonic() + 20
    while (get_json(node_health)["store"]["uploaded"] or 0) < 1:
        assert time.monotonic() < deadline, "the node uploaded nothing"
        time.sleep(0.2)
    uploaded_before = get_json(node_health)["store"]["uploaded"]
    zeros_256 = bytes(256 * MIB)
    zero_frames = [bytes(MAX_FRAGMENT_BYTES)] * 256

    async def flood() -> list[list[str]]:
        return await asyncio.gather(
            _attack(url, toks["node"], zeros_256), _attack(url, other, zeros_256),
            _attack(url, toks["node"], zero_frames), _attack(url, other, zero_frames),
            _attack(url, other, _declared_garbage("node1", 200 * MIB), replies=1),
        )

    with PeakRss(processes.procs[0].pid) as rss:
        one_frame_a, one_frame_b, frames_a, frames_b, declared = asyncio.run(flood())
    for got in (one_frame_a, one_frame_b):
        assert len(got) == 1 and got[0].startswith("closed 1009") and "exceeds limit" in got[0], got
    for got in (frames_a, frames_b):
        assert got[0] == "bad-magic" and got[1].startswith("closed 1008: bad-magic"), got
    # Read whole within its reservation, then refused; the connection stays open for the node's next segment.
    assert declared == ["checksum-mismatch", "open"], declared
    assert rss.peak < RSS_LIMIT, f"store RSS peaked at {rss.peak / MIB:.0f} MiB"

    uploaded_by_then = get_json(node_health)["store"]["uploaded"]
    deadline = time.monotonic() + 30
    while get_json(node_health)["store"]["uploaded"] < uploaded_by_then + 2:  # segments recorded after the flood
        assert time.monotonic() < deadline, "the node uploaded nothing after the flood"
        time.sleep(0.2)
    while (health := get_json(node_health))["spool"]["segments"] > 1:
        assert time.monotonic() < deadline, f"the node's backlog did not drain: {health['spool']}"
        time.sleep(0.2)
    assert health["store"]["uploaded"] > uploaded_before
    assert health["spool"]["lost_segments"] == 0 and health["store"]["refused"] == 0, health
    assert "Timeout" not in (health["store"]["last_error"] or ""), health["store"]
    assert get_json(f"http://127.0.0.1:{store_port}/health")["ingest"]["duplicates"] == 0
