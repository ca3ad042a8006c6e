"""Node, store relay and sht relay read a request target the same way (shared/request_target.py request_path):
query and fragment are not the camera id, %-escapes are decoded once, dot segments are refused (400), one
trailing slash is ignored; the same target gets the same status and names the same camera on all three."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.serve.server import NodeServer
from shared.protocol.health import NodeHealth
from shared.request_target import BadTarget, request_path
from shared.security import SecurityOptions
from store.app import Store
from store.live.relay_app import RelayProcess
from tests.shared.test_server_shell import raw_get


@pytest.fixture
async def three_servers(tmp_path):
    """Ports of a node, a store and an sht relay, none with a camera, no tokens needed."""
    node = NodeServer(SimpleNamespace(cameras={}), NodeHealth)  # type: ignore[arg-type]
    relay = RelayProcess("http://127.0.0.1:9", None, SecurityOptions(auth=False))
    store = Store(tmp_path / "store", security=SecurityOptions(auth=False))
    ports = {"node": await node.start("127.0.0.1", 0), "relay": await relay.start("127.0.0.1", 0)}
    await store.start("127.0.0.1", 0)
    assert store.port is not None
    ports["store"] = store.port
    try:
        yield ports
    finally:
        await node.close()
        await relay.stop()
        await store.stop()


@pytest.mark.parametrize("suffix", ["#frag", "?x", "?x#frag"])
async def test_node_and_relay_read_a_live_path_the_same_way(three_servers, suffix):
    """Query and fragment are not part of the camera id, on the node and on the relays alike."""
    assert await raw_get(three_servers["node"], "/live/c9" + suffix) == \
        (404, "no camera 'c9' on this node (cameras here: none)\n")
    for server in ("relay", "store"):
        assert await raw_get(three_servers[server], "/live/c9" + suffix) == (404, "no camera 'c9' (cameras: none)\n")
    for port in three_servers.values():
        assert (await raw_get(port, "/health" + suffix))[0] == 200
        assert (await raw_get(port, "/live" + suffix))[0] == 404


# target → (status, the camera the 404 names, or None)
TRICKY = {
    "/live/c9#frag": (404, "c9"),
    "/live/c%39": (404, "c9"),  # decoded once
    "/live/%63%39?format=fmp4": (404, "c9"),
    "/live/c9/": (404, "c9"),  # one trailing slash is ignored
    "/live/c9%252F": (404, "c9%2F"),  # decoded once only
    "/live/c%2F9": (404, "c/9"),  # an escaped slash is part of the name, which no camera has
    "/live//c9": (404, "/c9"),
    "/live/c9//": (404, "c9/"),
    "/live/C9": (404, "C9"),
    "/live/": (404, None),  # /live: no endpoint
    "/live/../health": (400, None),
    "/live/./c9": (400, None),
    "/live/%2e%2E/health": (400, None),  # escaped dot segments too
    "/live/c9/..": (400, None),
    "/live/c9%": (400, None),
    "/live/c9%zz": (400, None),
    "/live/%ff": (400, None),  # not UTF-8
    "/h%65alth": (200, None),
    "/health/": (200, None),
    "/health/.": (400, None),
}


def named_camera(body: str) -> str | None:
    found = re.match(r"no camera '(.*)'", body)
    return found[1] if found else None


@pytest.mark.parametrize("target", list(TRICKY))
async def test_tricky_targets_get_the_same_answer_from_node_store_and_relay(three_servers, target):
    answers = {server: await raw_get(port, target) for server, port in three_servers.items()}
    status, camera = TRICKY[target]
    for server, (got_status, body) in answers.items():
        assert (got_status, named_camera(body)) == (status, camera), (server, body)
    if status == 400:  # one reason, said the same way
        assert len({body for _, body in answers.values()}) == 1


@pytest.mark.parametrize("target, path", [
    ("/live/c9?x=%2F#f", "/live/c9"), ("/", "/"), ("/live/c%30/", "/live/c0"), ("/a%20b", "/a b"),
    ("//[x", "//[x"),
])
def test_request_path_decodes_once_and_strips_one_slash(target, path):
    assert request_path(target) == path


@pytest.mark.parametrize("target", ["/a/../b", "/.", "/%2e", "/x%", "/x%4", "/x%g0", "/%c3%28"])
def test_request_path_refuses_dot_segments_and_bad_escapes(target):
    with pytest.raises(BadTarget):
        request_path(target)


@given(st.text(max_size=80))
def test_request_path_gives_a_path_or_bad_target_and_nothing_else(target):
    try:
        path = request_path(target)
    except BadTarget:
        return
    assert not {".", ".."} & set(path.split("/"))  # never a path that means "the parent"
