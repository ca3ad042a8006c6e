"""A relay-only process learns revocations from the store: open streams of a revoked token end, new ones are refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import websockets
from websockets.asyncio.client import connect

from shared.security import bearer
from store.admin.keys import KeyStore
from tests.system.conftest import free_port, get_json, wait_for_health
from tests.system.test_security import start_system, status_of


def test_sht_relay_closes_and_refuses_revoked_tokens(processes, tmp_path):
    store_port, node_port, root, toks = start_system(processes, tmp_path)
    victim, claims = KeyStore(root).issue("viewer", "lost-tablet", 3600)
    relay_port = free_port()
    proc = processes.start("relay", "relay", "--store", f"http://127.0.0.1:{store_port}", "--host", "127.0.0.1",
                           "--port", str(relay_port), token=toks["viewer"])
    relay = f"http://127.0.0.1:{relay_port}"
    wait_for_health(relay, proc)
    live = f"ws://127.0.0.1:{relay_port}/live/cam0"
    deadline = time.monotonic() + 15
    while not get_json(relay + "/health")["cameras"]:
        assert time.monotonic() < deadline, "the relay never learned the fleet"
        time.sleep(0.2)

    async def revoke_while_watching() -> tuple[int | None, float, bool]:
        async with connect(live, additional_headers=bearer(victim)) as stream, \
                connect(live, additional_headers=bearer(toks["viewer"])) as bystander:
            await asyncio.wait_for(stream.recv(), 20)  # the init (or a status while the relay reaches the node)
            out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "sht", "token", "revoke", "--root",
                                                           str(root), claims.token_id], capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            revoked_at = time.monotonic()
            code = None
            try:
                while True:
                    await asyncio.wait_for(stream.recv(), 15)
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            took = time.monotonic() - revoked_at
            await asyncio.wait_for(bystander.recv(), 5)
            return code, took, bystander.close_code is None

    code, took, bystander_open = asyncio.run(revoke_while_watching())
    assert code == 1008 and took < 8, (code, took)  # the relay polls the store every 2 s
    assert bystander_open, "other viewers are unaffected"
    status, body = status_of(live, victim)
    assert status == 401 and "revoked" in body, (status, body)
    assert status_of(live, toks["viewer"])[0] == 101
    health = get_json(relay + "/health")
    assert health["revoked_tokens"] == 1 and health["revoked_error"] is None
    assert "token " + claims.token_id + " was revoked" in processes.log("relay")
