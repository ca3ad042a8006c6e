"""Every request to the S3 endpoint has a deadline (store/segments/deadline.py): an endpoint that takes the
connection and never answers (a frozen server) fails the request within it, instead of holding a PUT for minutes.

A TCP server on loopback that accepts and reads but never answers stands in for the frozen endpoint (the
SeaweedFS one, stopped with SIGSTOP, is in tests/system/test_cluster_outages.py); the deadline is lowered to
1 s so the test stays short.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.segments import SegmentStoreError
from store.segments import deadline as deadline_module
from store.segments import s3 as s3_module
from store.segments.deadline import deadline_s
from store.segments.s3 import S3Segments
from store.segments.url import S3Location, parse_segments_url

DEADLINE_S = 1.0


@pytest.fixture
async def frozen_endpoint() -> AsyncIterator[str]:
    """Answers a HEAD of the bucket (so the store starts), then freezes on anything else."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if request.startswith(b"HEAD /bucket "):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        while await reader.read(65536):  # takes every byte, answers nothing
            pass

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def test_the_deadline_grows_with_the_bytes_sent() -> None:
    assert deadline_s() == 10.0
    assert deadline_s(2 * 1024 * 1024) == 12.0  # a 2 MB segment
    assert round(deadline_s(90_000_000)) == 96  # a ten-minute segment at the camera's cap


async def test_a_put_to_a_frozen_endpoint_fails_within_its_deadline(
        frozen_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setattr(deadline_module, "REQUEST_DEADLINE_S", DEADLINE_S)
    location = parse_segments_url(f"s3://bucket/p?endpoint={frozen_endpoint}")
    assert isinstance(location, S3Location)
    backend = S3Segments(location, tmp_path)
    await backend.start()  # its HEAD of the bucket answered
    try:
        data = b"x" * 100_000
        for what in ("put", "exists"):
            began = time.monotonic()
            with pytest.raises(SegmentStoreError, match=f"does not answer .*got no answer from {frozen_endpoint} "
                                                        "within 1 s") as failed:
                async with asyncio.timeout(30):  # without the deadline: a PUT still waiting after 60 s
                    if what == "put":
                        await backend.put("cam0/2026-01-01/00/1.mp4", data, hashlib.sha256(data).hexdigest())
                    else:
                        await backend.exists("cam0/2026-01-01/00/1.mp4")
            took = time.monotonic() - began
            assert took < DEADLINE_S + 1.5, f"{what} failed after {took:.1f} s"
            assert failed.value.retry and failed.value.code == "storage-unavailable"  # ingest: retry: true
    finally:
        await backend.close()


async def test_a_whole_object_read_that_runs_out_of_time_stops_its_get(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``open_local`` (a worker thread waiting on the client's loop) gives up after FETCH_TIMEOUT_S; its GET must go
    with it, not go on holding a connection (and the bytes it would fetch) until the request's own deadline."""
    get_ended = asyncio.Event()
    gets_seen = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal gets_seen
        request = await reader.readuntil(b"\r\n\r\n")
        if request.startswith(b"HEAD /bucket "):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        gets_seen += 1
        while await reader.read(65536):  # answers nothing; the client closing the connection ends this
            pass
        get_ended.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    endpoint = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setattr(deadline_module, "REQUEST_DEADLINE_S", 60.0)  # the request's own deadline: far away
    monkeypatch.setattr(s3_module, "FETCH_TIMEOUT_S", 0.5)
    location = parse_segments_url(f"s3://bucket/p?endpoint={endpoint}")
    assert isinstance(location, S3Location)
    backend = S3Segments(location, tmp_path)
    await backend.start()

    def read_whole() -> None:
        with backend.open_local("cam0/2026-01-01/00/1.mp4"):
            pass

    try:
        with pytest.raises(SegmentStoreError, match=f"S3 at {endpoint} did not send it within 0.5 s; ask again"):
            await asyncio.to_thread(read_whole)
        assert gets_seen == 1
        async with asyncio.timeout(5):  # the GET is cancelled: its connection closes now, not after 60 s
            await get_ended.wait()
    finally:
        await backend.close()
        server.close()
