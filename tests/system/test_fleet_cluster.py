"""One fleet across two real ``sht store`` processes on one real PostgreSQL index (issue 16, several stores), with
real nodes: node0 lists both stores (``--store A,B``), node1 only A. Their control links are on A.

- B's ``fleet`` (and /health, /metrics) shows node0 up, with its health and A as the store holding its link;
- a setting changed through B reaches node0 (its /health shows it) within 2 s, and B says A pushed it;
- live view through B of node1's camera (node1's links are on A only): B's page and API list the camera, up, and a
  viewer of B's ``/live/CAMERA`` (plain and fMP4, as the page asks) gets frames, B's relay reaching the node at the
  URL in the shared ``nodes`` row;
- A SIGKILLed: node0 moves to B and B shows it up on B; node1, which cannot move, is shown down within the
  staleness limit and written down once by B (which takes the maintenance lease over); nothing shows either up
  on the dead store for longer than that.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.request import urlopen

import pytest

from shared.query_client import StoreClient
from store.nodes.fleet import STALE_S
from store.nodes.fleet_table import READ_S
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster
from tests.system.conftest import Processes, free_port, get_json, wait_for_health
from tests.system.live_clients import Viewer
from tests.system.live_clients import wait_until as wait_async
from tests.system.test_index_tokens import make_token

SETTING_LIMIT_S = 2.0  # a setting changed through B is on A's node within this
# A dead store's node reads down everywhere STALE_S after its last refresh, seen at the next read (every READ_S);
# the rest is this test's slack on a busy machine.
DOWN_LIMIT_S = STALE_S + READ_S + 2.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, module_postgres: PostgresCluster) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fleet-cluster")
    (tmp / "logs").mkdir()
    processes = Processes(tmp / "logs")
    index_url = module_postgres.create_database()  # the run's cluster (tests/servers.py)
    admin, _ = make_token(index_url, "admin", "tester")
    try:
        stores = {}
        for name in ("a", "b"):  # A first: it holds the maintenance lease
            port = free_port()
            proc = processes.start(f"store-{name}", "store", "--root", str(tmp / name), "--host", "127.0.0.1",
                                   "--port", str(port), "--detect", "off", "--index", index_url)
            url = f"http://127.0.0.1:{port}"
            stores[name] = {"proc": proc, "url": url, "ws": f"ws://127.0.0.1:{port}",
                            "id": wait_for_health(url, proc)["store_id"]}
        nodes = {}
        for node, store_list in (("node0", f"{stores['a']['ws']},{stores['b']['ws']}"),
                                 ("node1", stores["a"]["ws"])):
            token, _ = make_token(index_url, "node", node)
            port = free_port()
            proc = processes.start(node, "node", "--id", node, "--host", "127.0.0.1", "--port", str(port),
                                   "--store", store_list, "--spool", str(tmp / f"spool-{node}"),
                                   "--segment-seconds", "2", "--size", "160x120", "--fps", "5",
                                   "--camera", f"cam-{node}=synthetic", token=token)
            nodes[node] = {"proc": proc, "url": f"http://127.0.0.1:{port}"}
            wait_for_health(nodes[node]["url"], proc)
        yield {"index": index_url, "admin": admin, "stores": stores, "nodes": nodes, "processes": processes}
    finally:
        processes.stop_all()


def fleet(store_url: str, token: str) -> dict[str, dict[str, Any]]:
    async def call() -> dict[str, Any]:
        async with StoreClient(store_url, token=token) as client:
            return await client.call("fleet")

    return {n["node"]: n for n in asyncio.run(call())["nodes"]}


def wait_until(what: str, check, limit_s: float, every_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``check`` until it returns something true; that, and how long it took."""
    started = time.monotonic()
    while not (found := check()):
        assert time.monotonic() - started < limit_s, f"{what}: not within {limit_s:.0f} s"
        time.sleep(every_s)
    return found, time.monotonic() - started


def test_the_other_store_shows_the_node_up_with_its_health_and_the_store_holding_its_link(cluster):
    a, b, admin = cluster["stores"]["a"], cluster["stores"]["b"], cluster["admin"]

    def on_b() -> dict[str, Any] | None:
        node = fleet(b["url"], admin).get("node0")
        return node if node and node["state"] == "up" and node["health"] and len(node["history"]) >= 2 else None

    node, took = wait_until("node0 up with its health in B's fleet", on_b, 20)
    print(f"node0 up with health and history in B's fleet {took:.1f} s after it was up")
    assert node["store"] == a["id"] and node["cameras"] == ["cam-node0"]
    assert node["url"] == cluster["nodes"]["node0"]["url"]
    assert node["health"]["cameras"]["cam-node0"]["fps"] is not None
    assert fleet(a["url"], admin)["node0"]["store"] == a["id"]
    assert get_json(b["url"] + "/health")["nodes"] == {"node0": "up", "node1": "up"}
    with urlopen(b["url"] + "/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'sht_node_up{node="node0"} 1.0' in metrics and 'sht_node_up{node="node1"} 1.0' in metrics


def test_a_setting_changed_through_the_other_store_reaches_the_node_within_2_s(cluster):
    a, b, admin = cluster["stores"]["a"], cluster["stores"]["b"], cluster["admin"]
    node_url = cluster["nodes"]["node0"]["url"]
    said = subprocess.run([sys.executable, "-m", "sht", "settings", "--store", b["url"], "--token", admin,
                           "--camera", "cam-node0", "motion_sensitivity=0.9"], capture_output=True, text=True,
                          timeout=60)
    assert said.returncode == 0, said.stderr
    assert f"pushed to node0 by store {a['id']}" in said.stdout, said.stdout

    async def set_it() -> dict[str, Any]:
        async with StoreClient(b["url"], token=admin) as client:
            return await client.call("set_setting", camera="cam-node0", key="motion_sensitivity", value=0.3)

    started = time.monotonic()
    answer = asyncio.run(set_it())
    answered = time.monotonic() - started
    assert answer["pushed"] is True and answer["via_store"] == a["id"] and answer["node"] == "node0"

    def applied() -> bool:
        return get_json(node_url + "/health")["cameras"]["cam-node0"]["settings"]["motion_sensitivity"] == 0.3

    wait_until("the setting on the node", applied, 10, every_s=0.05)
    reached = time.monotonic() - started
    print(f"set through B: answered (pushed by A) after {answered:.2f} s, on the node after {reached:.2f} s")
    assert reached < SETTING_LIMIT_S, f"the node had the setting {reached:.2f} s after it was changed through B"


def test_live_view_through_the_other_store_of_a_node_linked_to_the_first(cluster):
    a, b, admin = cluster["stores"]["a"], cluster["stores"]["b"], cluster["admin"]
    viewer, _ = make_token(cluster["index"], "viewer", "watcher")
    node1, _ = wait_until("node1 up in B's fleet", lambda: (n := fleet(b["url"], admin).get("node1")) and
                          n["state"] == "up" and n, 20)
    assert node1["store"] == a["id"]  # node1 has no link to B at all

    async def listed_and_streamed() -> tuple[dict[str, Any], int, int]:
        async with StoreClient(b["url"], token=viewer) as client:  # what B's web page asks for its tiles
            report = await client.call("fleet")
        camera = f"ws://127.0.0.1:{b['url'].rsplit(':', 1)[1]}/live/cam-node1"
        plain, fmp4 = Viewer(camera, viewer).start(), Viewer(camera + "?format=fmp4", viewer, fmp4=True).start()
        try:
            got = await wait_async(lambda: len(plain.frames) >= 5 and len(fmp4.binaries) >= 5, 10)
            b_log = cluster["processes"].log("store-b")[-600:]
            assert got, f"through B: {len(plain.frames)} frames, {len(fmp4.binaries)} fMP4 messages in 10 s " \
                        f"({plain.texts[-1:]}, {fmp4.texts[-1:]}; B's log: {b_log})"
        finally:
            await plain.stop()
            await fmp4.stop()
        return report, len(plain.frames), len(fmp4.binaries)

    started = time.monotonic()
    report, frames, messages = asyncio.run(listed_and_streamed())
    print(f"through B, node1's camera: {frames} frames and {messages} fMP4 messages within "
          f"{time.monotonic() - started:.1f} s")
    assert report["cameras"]["cam-node1"]["node"] == "node1" and report["cameras"]["cam-node1"]["state"] == "up"
    with urlopen(f"{b['url']}/?token={viewer}", timeout=5) as page:
        assert page.status == 200 and "/live/" in page.read().decode()


def test_a_killed_store_s_nodes_move_or_read_down_and_none_stays_up_on_the_dead_store(cluster):
    a, b, admin = cluster["stores"]["a"], cluster["stores"]["b"], cluster["admin"]
    assert get_json(b["url"] + "/health")["index"]["maintenance"] is False
    a["proc"].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    a["proc"].wait(10)
    seen: list[tuple[float, str, str, str | None]] = []  # (s after the kill, node, state, store) as B showed them
    node0_on_b = node1_down = None
    while node0_on_b is None or node1_down is None:
        after = time.monotonic() - killed
        assert after < 30, f"30 s after A's kill B shows {seen[-2:]}"
        nodes = fleet(b["url"], admin)
        for name in ("node0", "node1"):
            seen.append((after, name, nodes[name]["state"], nodes[name]["store"]))
        if node0_on_b is None and (nodes["node0"]["state"], nodes["node0"]["store"]) == ("up", b["id"]):
            node0_on_b = after
        if node1_down is None and nodes["node1"]["state"] == "down":
            node1_down = after
        time.sleep(0.1)
    print(f"after A's SIGKILL, B showed node0 up on B after {node0_on_b:.2f} s, node1 down after {node1_down:.2f} s")
    up_on_a = [s for s in seen if s[2] == "up" and s[3] == a["id"]]
    assert all(at < DOWN_LIMIT_S for at, *_ in up_on_a), up_on_a
    assert node1_down < DOWN_LIMIT_S

    # B takes the lease over and writes node1 down, once; it stays down and node0 stays up on B.
    def written_down() -> bool:
        return committed_rows(cluster["index"], "SELECT state, link_store FROM nodes WHERE node = 'node1'") == \
            [("down", None)]

    wait_until("node1's row written down", written_down, 30, every_s=0.2)
    print(f"node1's row written down by B {time.monotonic() - killed:.1f} s after the kill")
    assert get_json(b["url"] + "/health")["index"]["maintenance"] is True
    assert committed_rows(cluster["index"], "SELECT state, link_store FROM nodes WHERE node = 'node0'") == \
        [("up", b["id"])]
    nodes = fleet(b["url"], admin)
    assert (nodes["node0"]["state"], nodes["node0"]["store"]) == ("up", b["id"])
    assert (nodes["node1"]["state"], nodes["node1"]["store"]) == ("down", None)
    assert "store " + a["id"] in cluster["processes"].log("store-b")  # B's log says why node1 is down
