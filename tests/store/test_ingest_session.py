"""The /ingest session on loopback: fragments, refusals before the end of a message, the budget and the caps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from shared.auth import NODES, AccessControl, Claims
from shared.protocol.ingest import (
    MAX_FRAGMENT_BYTES,
    EventRecord,
    SegmentHeader,
    encode_segment,
    fragments,
    sha256_hex,
)
from shared.server.routes import RouteTable, websocket_route
from shared.server.shell import ServerShell
from store.index.db import Index
from store.ingest import session as session_module
from store.ingest.budget import IngestBudget
from store.ingest.session import IngestSessions
from store.ingest.writer import Ingestor
from tests.store.real_segments import real_mp4

START = 1_764_165_166_000_000


def _segment(node: str = "node0", start: int = START, data: bytes | None = None) -> tuple[SegmentHeader, bytes]:
    data = real_mp4(2) if data is None else data
    return SegmentHeader(node=node, camera="cam0", start_us=start, end_us=start + 1_000_000, frames=2,
                         bytes=len(data), sha256=sha256_hex(data)), data


@pytest.fixture
async def ingest(tmp_path) -> AsyncIterator[tuple[str, IngestSessions]]:
    """A store's /ingest alone, every connection speaking for node0 (as its token would)."""
    index = await Index.open(tmp_path / "index.sqlite3")
    sessions = IngestSessions(Ingestor(tmp_path, index), index, budget=IngestBudget(8 * 2**20, 4 * 2**20),
                              max_connections_per_node=2)
    claims = Claims("node0", "node", 2**40, "t0")
    shell = ServerShell(RouteTable([websocket_route(
        "/ingest", NODES, lambda c, _: sessions.serve(c, claims), 64 * 2**20, max_fragment_bytes=MAX_FRAGMENT_BYTES)]),
        AccessControl(None))
    port = await shell.start("127.0.0.1", 0)
    yield f"ws://127.0.0.1:{port}/ingest", sessions
    await shell.close()
    await index.close()


async def _reply(ws: ClientConnection) -> dict | str:
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None
        return f"closed {exc.rcvd.code}"


async def test_a_segment_in_small_frames_is_acked_and_the_session_goes_on(ingest):
    url, _ = ingest
    header, data = _segment()
    async with connect(url) as ws:
        await ws.send(fragments(encode_segment(header, data), 700))
        assert await _reply(ws) == {"type": "ack", "segment_id": header.segment_id, "duplicate": False}
        await ws.send(encode_segment(header, data))  # unfragmented, as a v1 node sends it
        assert (await _reply(ws))["duplicate"] is True


async def test_a_message_that_ends_short_is_refused_and_the_session_goes_on(ingest):
    url, _ = ingest
    header, data = _segment()
    async with connect(url) as ws:
        await ws.send(encode_segment(header, data)[:-10])  # whole, unfragmented: read to its end
        refusal = await _reply(ws)
        assert refusal["code"] == "size-mismatch" and refusal["segment_id"] == header.segment_id
        await ws.send(fragments(encode_segment(header, data)[:-10], 500))
        assert (await _reply(ws))["code"] == "size-mismatch"
        await ws.send(encode_segment(header, data))
        assert (await _reply(ws))["type"] == "ack"


async def test_garbage_in_a_fragmented_message_is_refused_then_the_connection_closed(ingest):
    url, _ = ingest
    async with connect(url) as ws:
        sending = asyncio.create_task(ws.send([bytes(MAX_FRAGMENT_BYTES)] * 256))
        assert (await _reply(ws))["code"] == "bad-magic"
        async with asyncio.timeout(3):  # the close completes though the sender's buffers were full of frames
            assert await _reply(ws) == "closed 1008"
        with pytest.raises(websockets.ConnectionClosed):
            await sending


async def test_another_nodes_segment_is_refused_from_its_first_frame(ingest):
    url, _ = ingest
    header, data = _segment(node="node7")
    async with connect(url) as ws:
        await ws.send(fragments(encode_segment(header, data), 700))
        refusal = await _reply(ws)
        assert refusal["code"] == "node-mismatch" and refusal["segment_id"] == header.segment_id
        assert await _reply(ws) == "closed 1008"


async def test_more_bytes_than_declared_are_refused_as_they_arrive(ingest):
    url, _ = ingest
    header, data = _segment()
    async with connect(url) as ws:
        await ws.send(fragments(encode_segment(header, data) + bytes(5000), 1000))
        refusal = await _reply(ws)
        assert refusal["code"] == "size-mismatch" and "carries more" in refusal["message"]
        assert await _reply(ws) == "closed 1008"


async def test_a_long_event_is_refused(ingest):
    url, _ = ingest
    record = EventRecord("node0", "cam0", START, START + 1, "motion", detail="x" * 100)
    async with connect(url) as ws:
        await ws.send(record.serialize())
        assert (await _reply(ws))["type"] == "ack"
        await ws.send(["{" + " " * 40_000, " " * 40_000 + "}"])
        assert (await _reply(ws))["code"] == "too-large"
        assert await _reply(ws) == "closed 1008"


async def test_a_node_may_hold_only_so_many_connections(ingest):
    url, sessions = ingest
    async with connect(url), connect(url):
        await asyncio.sleep(0.1)
        assert sessions.connections["node0"] == 2
        async with connect(url) as third:
            refusal = await _reply(third)
            assert refusal["code"] == "too-many-connections" and "(2)" in refusal["message"] and refusal["retry"]
            assert await _reply(third) == "closed 1013"
    await asyncio.sleep(0.1)
    assert not sessions.connections


async def test_a_full_budget_answers_busy_and_a_stalled_sender_too_slow(ingest, monkeypatch):
    url, sessions = ingest
    monkeypatch.setattr(session_module, "BUDGET_WAIT_S", 0.3)
    monkeypatch.setattr(session_module, "READ_GRACE_S", 1.5)
    monkeypatch.setattr(session_module, "MIN_READ_BYTES_PER_S", 2**40)
    big = SegmentHeader(node="node0", camera="cam0", start_us=START, end_us=START + 10**6, frames=1,
                        bytes=4 * 2**20, sha256="0" * 64)
    first = encode_segment(big, b"")  # a header declaring 4 MiB (the node's whole budget), and no bytes yet
    async with connect(url) as holder, connect(url) as waiter:
        stalled = asyncio.create_task(holder.send(_stall(first)))
        await asyncio.sleep(0.2)
        assert sessions.budget.total.used == 4 * 2**20
        await waiter.send(fragments(encode_segment(*_segment()), 700))
        busy = await _reply(waiter)
        assert busy["code"] == "busy" and busy["retry"] and "4194304 a node" in busy["message"]
        slow = await _reply(holder)
        assert slow["code"] == "too-slow" and slow["retry"]
        stalled.cancel()
    await asyncio.sleep(0.1)
    assert sessions.budget.total.used == 0


async def test_a_slow_but_steady_sender_is_acked(ingest, monkeypatch):
    """A node on a slow uplink that keeps sending is never refused for pace (the reviewer's case: a rule of
    30 s + 1 s per 512 KiB refused a 90 MB segment over 200 KB/s on every retry)."""
    url, _ = ingest
    monkeypatch.setattr(session_module, "READ_GRACE_S", 0.2)
    monkeypatch.setattr(session_module, "MIN_READ_BYTES_PER_S", 1024)  # allows 0.2 s + size / 1 KiB/s: ~1.9 s
    monkeypatch.setattr(session_module, "FRAME_IDLE_S", 0.5)
    header, data = _segment()
    message = encode_segment(header, data)
    chunks = fragments(message, max(1, len(message) // 5))

    async def steady() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
            await asyncio.sleep(0.2)  # each gap under the idle limit; the whole well over 0.2 s

    async with connect(url) as ws:
        await ws.send(steady())
        ack = await _reply(ws)
        assert ack["type"] == "ack", ack


async def test_a_sender_that_stops_is_refused_by_the_idle_rule(ingest, monkeypatch):
    url, sessions = ingest
    monkeypatch.setattr(session_module, "READ_GRACE_S", 3600.0)  # the overall deadline is far away
    monkeypatch.setattr(session_module, "FRAME_IDLE_S", 0.5)
    header, data = _segment()
    first = fragments(encode_segment(header, data), 700)[0]
    async with connect(url) as holder:
        stalled = asyncio.create_task(holder.send(_stall(first)))
        started = asyncio.get_running_loop().time()
        slow = await _reply(holder)
        assert slow["code"] == "too-slow" and slow["retry"] and "every 0 s" not in slow["message"]
        assert asyncio.get_running_loop().time() - started < 5
        stalled.cancel()
    await asyncio.sleep(0.1)
    assert sessions.budget.total.used == 0


async def _stall(first: bytes) -> AsyncIterator[bytes]:
    yield first
    await asyncio.sleep(30)
    yield b""  # pragma: no cover


def _large_mp4() -> tuple[SegmentHeader, bytes]:
    """A real segment of more than one frame's limit: 30 keyframes of 1080p."""
    from node.capture.encode import H264Encoder
    from node.recording.segmenter import FinishedSegment, build_segment
    from node.sources.synthetic import SyntheticSource
    from shared.fanout import AccessUnit

    width, height, fps = 1920, 1080, 10
    source, encoder = SyntheticSource(width, height, fps), H264Encoder(width, height, fps, keyframe_interval_s=0.1)
    encoded = [u for i in range(30) for u in encoder.encode(source.read(i), START + i * 100_000)] + encoder.flush()
    units = [AccessUnit.build(u.capture_us, u.keyframe, u.data) for u in encoded]
    return build_segment("node0", FinishedSegment("cam0", tuple(units), 100_000), width, height, fps)


async def test_the_node_uploader_sends_a_large_segment_in_frames_and_it_is_acked(ingest, tmp_path):
    from node.recording.spool import Spool
    from node.store_link.uploader import Uploader

    url, _ = ingest
    header, data = _large_mp4()
    assert len(data) > 1.2 * MAX_FRAGMENT_BYTES  # one frame of it would close the connection (1009)
    spool = Spool(tmp_path / "spool")
    uploader = Uploader(url.removesuffix("/ingest"), spool, "node0", limit_bytes=2**30)
    uploader.add(spool.put(header, data))
    task = asyncio.create_task(uploader.run())
    try:
        async with asyncio.timeout(20):
            while uploader.uploaded < 1:
                assert uploader.last_error is None, uploader.last_error
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert (tmp_path / "segments" / "cam0").exists() and not uploader.pending
