"""Issue 14 replays against a real store on loopback: each request's cost is bounded before work starts.

Row 1: a minute timeline from 0 to now; row 4: requests in flight on one connection and per token; row 5: a
request nested 30,000 deep; row 6: an ingest header with start_us = 2**62. Each is refused with a clear error
naming the limit, and the connection (and the store) keep working.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from shared.auth import Claims
from shared.protocol.ingest import SegmentHeader, encode_segment, parse_reply, sha256_hex
from shared.protocol.query import MAX_IN_FLIGHT_PER_CONNECTION, MAX_IN_FLIGHT_PER_TOKEN, MAX_TIMELINE_BUCKETS
from shared.query_client import StoreClient, StoreError
from shared.security import bearer
from store.admin.keys import KeyStore
from store.app import Store
from store.serve.in_flight import InFlight
from tests.store.real_segments import real_mp4


@pytest.fixture
async def store(tmp_path):
    """A store with tokens on a loopback port; yields (port, {role: token})."""
    running = Store(tmp_path / "store")
    await running.start("127.0.0.1", 0)
    keys = KeyStore(tmp_path / "store")
    toks = {role: keys.issue(role, subject, 600)[0] for role, subject in
            (("viewer", "viewer"), ("node", "node0"), ("admin", "tester"))}
    assert running.port is not None
    try:
        yield running.port, toks
    finally:
        await running.stop()


def request(rid: int, method: str, **params: object) -> str:
    return json.dumps({"id": rid, "method": method, "params": params})


async def test_row1_minute_buckets_from_0_to_now_are_refused_at_once(store):
    port, toks = store
    async with StoreClient(f"http://127.0.0.1:{port}", token=toks["viewer"]) as client:
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            await client.call("timeline", camera="cam0", bucket="minute", from_us=0, to_us=int(time.time() * 1e6))
        assert time.monotonic() - started < 1.0
        assert (err.value.code, err.value.field) == ("bad-param", "to_us")
        assert f"at most {MAX_TIMELINE_BUCKETS}" in err.value.message
        with pytest.raises(StoreError) as err:
            await client.call("segments", from_us=0, to_us=2**62)  # past the store's time range
        assert err.value.code == "bad-param" and "2255" in err.value.message
        assert "nodes" in await client.call("fleet")


async def test_row4_requests_past_the_connection_cap_are_answered_busy_at_once(store):
    port, toks = store
    count = MAX_IN_FLIGHT_PER_CONNECTION + 24
    async with connect(f"ws://127.0.0.1:{port}/api", additional_headers=bearer(toks["viewer"])) as ws:
        for rid in range(1, count + 1):  # all sent before reading a reply
            await ws.send(request(rid, "fleet"))
        replies = [json.loads(await ws.recv()) for _ in range(count)]
        assert sorted(r["id"] for r in replies) == list(range(1, count + 1))  # one final reply each
        busy = [r["error"] for r in replies if "error" in r]
        assert busy and all(e["code"] == "busy" for e in busy)
        assert f"({MAX_IN_FLIGHT_PER_CONNECTION})" in busy[0]["message"] and "wait for their replies" in \
            busy[0]["message"]
        assert len(busy) <= count - MAX_IN_FLIGHT_PER_CONNECTION
        await ws.send(request(999, "fleet"))  # answered once the others are
        assert "result" in json.loads(await ws.recv())


async def test_row4_store_client_keeps_under_the_cap_so_its_callers_never_see_busy(store):
    port, toks = store
    async with StoreClient(f"http://127.0.0.1:{port}", token=toks["viewer"]) as client:
        answers = await asyncio.gather(*(client.call("fleet") for _ in range(3 * MAX_IN_FLIGHT_PER_CONNECTION)))
    assert all("nodes" in a for a in answers)


async def test_row5_a_request_nested_30000_deep_is_bad_json_and_the_connection_lives(store):
    port, toks = store
    deep = request(1, "fleet")[:-1] + ', "x": ' + "[" * 30_000 + "]" * 30_000 + "}"
    assert len(deep) < 64 * 1024
    async with connect(f"ws://127.0.0.1:{port}/api", additional_headers=bearer(toks["viewer"])) as ws:
        await ws.send(deep)
        error = json.loads(await ws.recv())["error"]
        assert error["code"] == "bad-json" and "32 deep" in error["message"]
        await ws.send(request(2, "fleet"))
        assert json.loads(await ws.recv())["id"] == 2
    async with connect(f"ws://127.0.0.1:{port}/ingest", additional_headers=bearer(toks["node"])) as ws:
        await ws.send('{"type": "event", "x": ' + "[" * 30_000 + "]" * 30_000 + "}")
        refusal = parse_reply(await ws.recv())
        assert refusal.__class__.__name__ == "Refusal" and getattr(refusal, "code", None) == "bad-json"


async def test_row6_an_ingest_header_past_the_time_range_is_refused_naming_the_field(store):
    port, toks = store
    data = real_mp4(2)

    def segment(start_us: int) -> bytes:
        header = SegmentHeader(node="node0", camera="cam0", start_us=start_us, end_us=start_us + 200_000, frames=2,
                               bytes=len(data), sha256=sha256_hex(data))
        return encode_segment(header, data)

    async with connect(f"ws://127.0.0.1:{port}/ingest", additional_headers=bearer(toks["node"]),
                       max_size=2**20) as ws:
        await ws.send(segment(2**62))
        refusal = parse_reply(await ws.recv())
        assert getattr(refusal, "code", None) == "bad-field"
        assert "'start_us'" in getattr(refusal, "message", "") and "2255" in getattr(refusal, "message", "")
        await ws.send(segment(10**15))  # the same connection still takes a good one
        assert parse_reply(await ws.recv()).__class__.__name__ == "Ack"


def test_in_flight_caps_per_connection_and_per_token():
    caps = InFlight(per_connection=2, per_token=3)
    claims = Claims("viewer", "viewer", 0, "tok1")
    first, second = caps.connection(claims), caps.connection(claims)
    assert first.take() is None and first.take() is None
    assert "(2)" in (first.take() or "")  # the connection's cap
    assert second.take() is None
    assert "with this token" in (second.take() or "") and "(3)" in (second.take() or "")
    first.give_back()
    assert second.take() is None  # a slot the token got back
    anonymous = caps.connection(None)  # no token (auth off): the connection's cap only
    assert anonymous.take() is None and anonymous.take() is None and anonymous.take() is not None
    for slots in (first, second, second):
        slots.give_back()
    assert not caps.by_token
    assert MAX_IN_FLIGHT_PER_TOKEN >= MAX_IN_FLIGHT_PER_CONNECTION
