"""Issue 14 row 2 through a real store process: clients that ask for a long export and vanish at random moments
(an aborted TCP connection or a clean close) leave nothing in ROOT/cache/exports, and the store keeps serving."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from websockets.asyncio.client import connect

from shared.clock import now_us
from shared.security import bearer
from tests.store.footage import CAMERA, SEGMENT_US, make_footage
from tests.system.conftest import free_port, get_json, tokens, wait_for_health

SEGMENTS = 1200  # 40 minutes of 320x240: an export that takes about a second
T0 = (now_us() - 2 * 3600 * 1_000_000) // 1_000_000 * 1_000_000  # recent: retention (30 days) keeps it


def exports_left(root: Path) -> list[str]:
    exports = root / "cache" / "exports"
    return sorted(p.name for p in exports.iterdir()) if exports.exists() else []


async def ask_and_vanish(url: str, token: str, delay_s: float, abort: bool, root: Path, seen: list[int]) -> None:
    ws = await connect(url, additional_headers=bearer(token), max_size=None)
    await ws.send(json.dumps({"id": 1, "method": "export",
                              "params": {"camera": CAMERA, "from_us": T0, "to_us": T0 + SEGMENTS * SEGMENT_US}}))
    await asyncio.sleep(delay_s)
    seen.append(len(exports_left(root)))  # the clips being written as this client goes
    if abort:
        ws.transport.abort()  # gone without a word, as a killed client or a dropped network
    else:
        await ws.close()


async def export_whole(url: str, token: str) -> dict:
    async with connect(url, additional_headers=bearer(token), max_size=None) as ws:
        await ws.send(json.dumps({"id": 7, "method": "export",
                                  "params": {"camera": CAMERA, "from_us": T0, "to_us": T0 + 20 * SEGMENT_US}}))
        async for message in ws:
            if isinstance(message, str) and ("result" in (reply := json.loads(message)) or "error" in reply):
                return reply
    raise AssertionError("no final reply")


def test_clients_vanishing_mid_export_leave_nothing_behind(processes, tmp_path):
    root = tmp_path / "store"
    make_footage(root, SEGMENTS, start_us=T0)
    viewer = tokens(root)["viewer"]
    port = free_port()
    proc = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port))
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    api = f"ws://127.0.0.1:{port}/api"
    rng = random.Random(2)
    seen: list[int] = []
    assert "result" in asyncio.run(export_whole(api, viewer)), "the footage is there"

    async def attack() -> None:
        for k in range(8):
            await ask_and_vanish(api, viewer, rng.uniform(0.05, 0.6), k % 2 == 0, root, seen)
        # Several at once, too, each on its own connection.
        await asyncio.gather(*(ask_and_vanish(api, viewer, rng.uniform(0.05, 0.4), True, root, seen)
                               for _ in range(4)))

    asyncio.run(attack())
    assert sum(seen) >= 6, f"the clients left while their exports were being written: {seen}"
    deadline = time.monotonic() + 5
    while exports_left(root) and time.monotonic() < deadline:
        time.sleep(0.05)  # a cancelled export stops within a packet; its files go as soon as it has
    assert exports_left(root) == []
    time.sleep(1.5)  # long enough for a worker that kept going (before the fix) to rename its clip into place
    assert exports_left(root) == []
    # The store is fine: it answers health and a short export, and that leaves nothing either.
    assert get_json(f"http://127.0.0.1:{port}/health")
    reply = asyncio.run(export_whole(api, viewer))
    assert "result" in reply, reply
    assert reply["result"]["frames"] == 20 * 20
    assert exports_left(root) == []
    assert proc.poll() is None
