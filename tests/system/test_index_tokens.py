"""Tokens for a cluster, with real processes (issue 16): two ``sht store`` processes on one PostgreSQL index and no
ROOT/keys/ files copied between them, the signing key in the index or in one ``--key-file`` both are given; tokens
made by ``sht token create --index URL`` (no store involved) are accepted by both, a node token uploads to either,
and a token revoked by ``sht token revoke --index URL`` is refused by both within the revocation poll
(REVOKED_POLL_S, 1 s), an API session it had open on either closed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from shared.protocol.ingest import Ack, SegmentHeader, encode_segment, parse_reply, sha256_hex
from shared.security import bearer
from store.admin.index_keys import REVOKED_POLL_S
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster
from tests.store.real_segments import real_mp4
from tests.store.test_index_keys import key_file
from tests.system.conftest import Processes, free_port, wait_for_health
from tests.system.test_security import status_of

START = 1_764_165_166_000_000  # 2025-11-26T13:52:46Z
REFUSED_WITHIN_S = REVOKED_POLL_S + 1.0  # the poll, and a handshake's round trip on a busy 2-core machine


@pytest.fixture(scope="module")
def postgres(module_postgres: PostgresCluster) -> PostgresCluster:
    """The run's PostgreSQL (tests/servers.py): this module makes databases in it, never stops it."""
    return module_postgres


def sht(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, timeout=60)


def make_token(index_url: str, role: str, subject: str, *key: str) -> tuple[str, str]:
    """A token and its id, from ``sht token create --index`` (``key``: ``--key-file FILE`` or nothing)."""
    made = sht("token", "create", "--index", index_url, "--role", role, "--subject", subject, "--ttl", "1h", *key)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip(), made.stderr.split(" id ")[1].split(",")[0]


def start_store(processes: Processes, root: Path, name: str, index: str, *key: str) -> str:
    port = free_port()
    proc = processes.start(name, "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
                           "--detect", "off", "--index", index, *key)
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    return f"127.0.0.1:{port}"


async def upload(store: str, token: str, start_us: int) -> object:
    data = real_mp4()
    header = SegmentHeader(node="node0", camera="cam0", start_us=start_us, end_us=start_us + 100_000, frames=1,
                           bytes=len(data), sha256=sha256_hex(data))
    async with connect(f"ws://{store}/ingest", additional_headers=bearer(token), max_size=2**20) as ws:
        await ws.send(encode_segment(header, data))
        return parse_reply(await ws.recv())


@pytest.mark.parametrize("where", ["index", "key-file"])
def test_a_token_made_for_the_cluster_works_on_every_store_and_a_revocation_reaches_them_all(
        processes: Processes, tmp_path: Path, postgres: PostgresCluster, where: str) -> None:
    index_url = postgres.create_database()
    key: tuple[str, ...] = ()
    if where == "key-file":
        key = ("--key-file", str(key_file(tmp_path / "signing.key")))
    viewer, viewer_id = make_token(index_url, "viewer", "tablet", *key)  # before any store ran: the CLI makes it
    kept, _ = make_token(index_url, "viewer", "kept", *key)
    node, _ = make_token(index_url, "node", "node0", *key)
    a = start_store(processes, tmp_path / "a", "store-a", index_url, *key)
    b = start_store(processes, tmp_path / "b", "store-b", index_url, *key)
    in_index = committed_rows(index_url, "SELECT private_pem IS NOT NULL FROM signing_keys")
    assert in_index == [(where == "index",)]
    assert not (tmp_path / "a" / "keys" / "signing.key").exists()  # no key files: the index's key
    keys = {sht_key(store) for store in (a, b)}
    assert len(keys) == 1  # nodes verify viewers with the key from whichever store they reach

    for store in (a, b):
        assert status_of(f"ws://{store}/api", viewer)[0] == 101
    replies = [asyncio.run(upload(store, node, START + k * 1_000_000)) for k, store in enumerate((a, b))]
    assert all(isinstance(r, Ack) and not r.duplicate for r in replies), replies
    assert committed_rows(index_url, "SELECT start_us FROM segments ORDER BY start_us") == [
        (START,), (START + 1_000_000,)]

    async def revoke_while_connected() -> tuple[float, list[int | None]]:
        """Sessions open with the token on both stores; revoked by the CLI; how long until both refuse it."""
        sessions = [await connect(f"ws://{store}/api", additional_headers=bearer(viewer)) for store in (a, b)]
        try:
            done = await asyncio.to_thread(sht, "token", "revoke", "--index", index_url, viewer_id)
            assert done.returncode == 0 and f"revoked {viewer_id}" in done.stdout, done.stderr
            revoked_at = time.monotonic()
            for store in (a, b):
                while (await asyncio.to_thread(status_of, f"ws://{store}/api", viewer))[0] != 401:
                    assert time.monotonic() - revoked_at < REFUSED_WITHIN_S, f"{store} still takes the token"
                    await asyncio.sleep(0.05)
            refused_after = time.monotonic() - revoked_at
            codes = []
            for ws in sessions:  # what the token had open is ended, on both stores
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
            return refused_after, codes
        finally:
            for ws in sessions:
                await ws.close()

    refused_after, codes = asyncio.run(revoke_while_connected())
    print(f"revoked token refused by both stores {refused_after:.2f} s after sht token revoke --index returned")
    assert codes == [1008, 1008]
    for store in (a, b):
        code, body = status_of(f"ws://{store}/api", viewer)
        assert code == 401 and "revoked" in body
        assert status_of(f"ws://{store}/api", kept)[0] == 101  # the others still work
    # A token made now, while both run, works on both at once: they read the key from the index at start.
    late, _ = make_token(index_url, "viewer", "late", *key)
    assert [status_of(f"ws://{store}/api", late)[0] for store in (a, b)] == [101, 101]


def sht_key(store: str) -> str:
    from urllib.request import urlopen

    with urlopen(f"http://{store}/key", timeout=5) as r:
        return r.read().decode()
