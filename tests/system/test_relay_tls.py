"""Relays reach nodes that serve TLS: the node announces https; the store and ``sht relay`` verify it (--node-ca)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

from websockets.asyncio.client import connect

from shared.security import bearer
from tests.system.conftest import free_port
from tests.system.live_clients import Viewer, wait_until
from tests.system.test_security import _wait, make_certificates, start_system, status_of


def test_relays_verify_tls_nodes_with_the_node_ca(processes, tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    tls = ("--tls-cert", cert, "--tls-key", key)
    store_port, node_port, root, toks = start_system(processes, tmp_path, *tls, "--node-ca", ca,
                                                     node_args=(*tls, "--ca", ca), scheme="https", ca=ca)
    verified = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + 15
    while status_of(f"wss://127.0.0.1:{node_port}/live/cam0", toks["viewer"], verified)[0] != 101:
        assert time.monotonic() < deadline, "the TLS node never accepted viewers"
        time.sleep(0.2)
    store = f"https://127.0.0.1:{store_port}"
    relays = {}
    for name, extra in (("trusting", ("--node-ca", ca)), ("untrusting", ())):
        port = free_port()
        proc = processes.start(name, "relay", "--store", store, "--ca", ca, "--host", "127.0.0.1",
                               "--port", str(port), *extra, token=toks["viewer"])
        _wait(f"http://127.0.0.1:{port}/health", proc, None)
        relays[name] = port

    async def scenario() -> None:
        async with connect(f"wss://127.0.0.1:{store_port}/api", ssl=verified,
                           additional_headers=bearer(toks["viewer"])) as api:
            await api.send('{"id": 1, "method": "fleet", "params": {}}')
            nodes = json.loads(await api.recv())["result"]["nodes"]
        assert [n["url"] for n in nodes] == [f"https://127.0.0.1:{node_port}"], "the node announced its scheme"

        via_store = Viewer(f"wss://127.0.0.1:{store_port}/live/cam0?stream=sub", toks["viewer"],
                           ssl_context=verified).start()
        via_relay = Viewer(f"ws://127.0.0.1:{relays['trusting']}/live/cam0", toks["viewer"]).start()
        refused = Viewer(f"ws://127.0.0.1:{relays['untrusting']}/live/cam0", toks["viewer"]).start()
        try:
            assert await wait_until(lambda: len(via_store.frames) >= 5 and len(via_relay.frames) >= 5, 20), (
                via_store.texts, via_relay.texts)
            assert await wait_until(lambda: "down" in refused.states(), 20), refused.texts
            reason = next(t["reason"] for t in refused.texts if t.get("state") == "down")
            assert "certificate" in reason and "--node-ca" in reason, reason
            assert not refused.frames
        finally:
            for v in (via_store, via_relay, refused):
                await v.stop()

    asyncio.run(scenario())
