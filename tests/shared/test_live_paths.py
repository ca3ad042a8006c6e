"""Node and relay read a ``/live/`` request target the same way: query and fragment are not the camera id."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from node.serve.server import NodeServer
from shared.protocol.health import NodeHealth
from shared.security import SecurityOptions
from store.live.relay_app import RelayProcess
from tests.shared.test_server_shell import raw_get


@pytest.mark.parametrize("suffix", ["#frag", "?x", "?x#frag"])
async def test_node_and_relay_read_a_live_path_the_same_way(suffix):
    """Query and fragment are not part of the camera id, on the node and on the relay alike."""
    node = NodeServer(SimpleNamespace(cameras={}), NodeHealth)  # type: ignore[arg-type]
    relay = RelayProcess("http://127.0.0.1:9", None, SecurityOptions(auth=False))
    node_port = await node.start("127.0.0.1", 0)
    relay_port = await relay.start("127.0.0.1", 0)
    try:
        assert await raw_get(node_port, "/live/c9" + suffix) == \
            (404, "no camera 'c9' on this node (cameras here: none)\n")
        assert await raw_get(relay_port, "/live/c9" + suffix) == (404, "no camera 'c9' (cameras: none)\n")
        for port in (node_port, relay_port):
            assert (await raw_get(port, "/health" + suffix))[0] == 200
            assert (await raw_get(port, "/live" + suffix))[0] == 404
    finally:
        await node.close()
        await relay.stop()
