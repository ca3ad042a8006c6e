"""Stores killed under a recording fleet (issue 16, faults), with real processes: ``sht store`` processes sharing one
PostgreSQL index (tests/store/postgres.py) and one SeaweedFS bucket (tests/store/seaweed.py), and ``sht node``
processes, each with two simulated cameras in 1 s segments and ``--store A,B``.

- **A store killed under load**: A is SIGKILLed while three nodes upload to it. Every node moves to B within 2 s,
  and B indexes a segment of each within 2 s; afterwards every segment each node recorded is indexed once, with
  no hole in any camera's coverage, its object holds the bytes its row names, and ``sht store check --deep``
  is clean.
- **A store killed between PUT and COMMIT** (made deterministic by ``SHT_FAULT_PAUSE_AFTER_PUT``,
  docs/reliability.md): the object is in the bucket and no row names it. Nothing serves it as footage
  (segments, timeline, thumbnail); the node that recorded it sends it again to B, which indexes it once, under
  the same name with the same bytes; an object that no node will send again is reported by ``sht store check``
  and indexed by ``--repair``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from shared.clock import now_us
from shared.query_client import StoreClient, StoreError
from store.admin.keys import KeyStore
from store.segments import segment_name
from tests.store.postgres import PostgresCluster
from tests.store.seaweed import BUCKET, Seaweed
from tests.system.conftest import Processes, free_port, get_json, wait_for_health

SEGMENT_S = 1
NODES = 3
MOVED_WITHIN_S = 2.0  # the issue's limit: every node uploading to the other store within 2 s of the kill
# Consecutive segments closer than this: nothing between them was lost (a lost segment leaves SEGMENT_S; frames
# dropped on a busy machine leave a frame interval or two, 0.18 s seen in CI).
CONTINUOUS_S = SEGMENT_S / 2
PAUSE_S = 60.0  # SHT_FAULT_PAUSE_AFTER_PUT for the store killed in that window (it never gets to the end)
IN_FLIGHT_S = 0.3  # SHT_FAULT_PAUSE_AFTER_PUT for the store killed under load: it keeps up (2 segments/s a node)
STORED_UNINDEXED = "is stored, not indexed"  # its log line (store/ingest/writer.py)


@dataclass
class Servers:
    postgres: PostgresCluster
    seaweed: Seaweed
    processes: Processes
    work: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, module_postgres: PostgresCluster,
            session_seaweed: Seaweed) -> Iterator[Servers]:
    """The run's PostgreSQL and SeaweedFS (tests/servers.py: the stores are killed here, never these); a database
    and a prefix per test."""
    work = tmp_path_factory.mktemp("kills")
    (work / "logs").mkdir()
    processes = Processes(work / "logs")
    postgres, seaweed = module_postgres, session_seaweed
    with pytest.MonkeyPatch.context() as env:
        for key, value in seaweed.env().items():  # the stores (child processes) reach the bucket with these
            env.setenv(key, value)
        env.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        env.delenv("SHT_FAULT_PAUSE_AFTER_PUT", raising=False)
        try:
            yield Servers(postgres, seaweed, processes, work)
        finally:
            processes.stop_all()


@dataclass
class Cluster:
    """Two stores (A first in every node's list) on one index database and one bucket prefix."""

    servers: Servers
    name: str
    index_url: str
    prefix: str
    tokens: dict[str, str]  # role or node id -> token
    store_a: subprocess.Popen
    url_a: str
    url_b: str

    @property
    def segments_url(self) -> str:
        return self.servers.seaweed.url(prefix=self.prefix)

    @property
    def stores(self) -> str:
        return f"{ws(self.url_a)},{ws(self.url_b)}"

    def rows(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.index_url, autocommit=True, connect_timeout=5) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    def segments_of(self, camera: str) -> list[tuple[int, int, str, str]]:
        return self.rows("SELECT start_us, end_us, sha256, path FROM segments WHERE camera = %s ORDER BY start_us",
                         camera)

    def objects(self) -> dict[str, bytes]:
        """Every segment object below the prefix (name -> bytes); the store's own ``_…`` keys left out."""
        return asyncio.run(_objects(self.servers.seaweed, self.prefix + "/"))

    def check(self, *flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sht", "store", "check", "--root",
                               str(self.servers.work / f"{self.name}-check"), "--index", self.index_url,
                               "--segments", self.segments_url, *flags], capture_output=True, text=True, timeout=120)


def ws(url: str) -> str:
    return url.replace("http://", "ws://")


async def _objects(seaweed: Seaweed, prefix: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    async with seaweed.client() as s3:
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"].removeprefix(prefix)
                if not name.startswith("_"):
                    reply = await s3.get_object(Bucket=BUCKET, Key=obj["Key"])
                    async with reply["Body"] as body:
                        found[name] = await body.read()
    return found


def start_store(servers: Servers, root: Path, name: str, index_url: str, segments_url: str,
                pause_after_put_s: float = 0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with pytest.MonkeyPatch.context() as env:  # the child inherits it; this process keeps its own
        if pause_after_put_s:
            env.setenv("SHT_FAULT_PAUSE_AFTER_PUT", str(pause_after_put_s))
        proc = servers.processes.start(name, "store", "--root", str(root), "--host", "127.0.0.1", "--port",
                                       str(port), "--detect", "off", "--index", index_url, "--segments", segments_url)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc, timeout=30)
    return proc, url


def start_cluster(servers: Servers, name: str, node_ids: list[str], pause_a_s: float = 0) -> Cluster:
    """A new index database and prefix; A's root key (with a token per node, a viewer's and an admin's) goes
    into the index at A's first start, and B, started after, signs and verifies with it."""
    index_url, prefix = servers.postgres.create_database(), name
    root_a = servers.work / f"{name}-a"
    keys = KeyStore(root_a)
    made = {subject: keys.issue("node", subject, 3600)[0] for subject in node_ids}
    made |= {role: keys.issue(role, role, 3600)[0] for role in ("viewer", "admin")}
    segments_url = servers.seaweed.url(prefix=prefix)
    store_a, url_a = start_store(servers, root_a, f"{name}-store-a", index_url, segments_url, pause_a_s)
    _, url_b = start_store(servers, servers.work / f"{name}-b", f"{name}-store-b", index_url, segments_url)
    return Cluster(servers, name, index_url, prefix, made, store_a, url_a, url_b)


def start_node(cluster: Cluster, node_id: str, cameras: list[str], spool: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = ["node", "--id", node_id, "--host", "127.0.0.1", "--port", str(port), "--store", cluster.stores,
            "--spool", str(spool), "--segment-seconds", str(SEGMENT_S), "--size", "320x240", "--fps", "10"]
    for i, camera in enumerate(cameras):
        args += ["--camera", f"{camera}=synthetic{':busy' if i % 2 else ''}"]
    proc = cluster.servers.processes.start(f"{cluster.name}-{node_id}", *args, token=cluster.tokens[node_id])
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    return proc, url


def test_a_store_killed_under_load_loses_nothing_and_every_node_is_on_the_other_within_2_s(
        servers: Servers) -> None:
    node_ids = [f"node{i}" for i in range(NODES)]
    # A holds each segment IN_FLIGHT_S between its PUT and its row, so the kill can be timed to land there.
    cluster = start_cluster(servers, "killed", node_ids, pause_a_s=IN_FLIGHT_S)
    cameras = {node: [f"k{i}a", f"k{i}b"] for i, node in enumerate(node_ids)}
    nodes = {node: start_node(cluster, node, cameras[node], servers.work / f"spool-{node}") for node in node_ids}
    every_camera = [cam for cams in cameras.values() for cam in cams]

    deadline = time.monotonic() + 30
    while min(len(cluster.segments_of(cam)) for cam in every_camera) < 3:  # all on A, a few segments each
        assert time.monotonic() < deadline, {cam: len(cluster.segments_of(cam)) for cam in every_camera}
        time.sleep(0.2)
    for node, (_, url) in nodes.items():
        link = get_json(url + "/health")["store"]
        assert link["url"] == ws(cluster.url_a) and link["link"] == "connected", (node, link)

    stored = len(wait_for_log(servers, "killed-store-a", STORED_UNINDEXED, 1))
    caught = wait_for_log(servers, "killed-store-a", STORED_UNINDEXED, stored + 1)[-1]  # a PUT that just finished
    cluster.store_a.send_signal(signal.SIGKILL)
    killed, killed_us = time.monotonic(), now_us()
    cluster.store_a.wait()
    caught_name = caught.split("segments/")[1].split(" ")[0]  # in the bucket, its row never written by A
    on_b: dict[str, float] = {}
    indexed_by_b: dict[str, float] = {}
    while len(on_b) < NODES or len(indexed_by_b) < NODES:
        assert time.monotonic() - killed < 15, f"15 s after A's kill: on B {on_b}, indexed by B {indexed_by_b}"
        for node, (_, url) in nodes.items():
            link = get_json(url + "/health")["store"]
            if node not in on_b and link["url"] == ws(cluster.url_b) and link["link"] == "connected":
                on_b[node] = time.monotonic() - killed
        # A is dead: a row received after the kill was indexed by B (acknowledged right after its commit).
        for node, first_us in cluster.rows("SELECT node, MIN(received_us) FROM segments WHERE received_us > %s "
                                           "GROUP BY node", killed_us):
            indexed_by_b.setdefault(node, (first_us - killed_us) / 1e6)
        time.sleep(0.05)
    print(f"after A's SIGKILL: nodes on B after {fmt(on_b)} s; B indexed a segment of each after {fmt(indexed_by_b)}")
    for node in node_ids:
        assert on_b[node] < MOVED_WITHIN_S, f"{node} was on B {on_b[node]:.2f} s after A's kill"
        assert indexed_by_b[node] < MOVED_WITHIN_S, f"B indexed {node}'s first segment {indexed_by_b[node]:.2f} s " \
                                                    "after A's kill"

    time.sleep(2)  # B takes every node's segments as they come
    final: dict[str, dict] = {}
    for node, (proc, url) in nodes.items():
        final[node] = get_json(url + "/health")
        proc.send_signal(signal.SIGTERM)  # a clean stop records the segment in progress and uploads it, to B
    for node, (proc, _) in nodes.items():
        assert proc.wait(30) == 0, f"{node} exited with {proc.returncode}"

    objects = cluster.objects()
    resent = {node: health["store"]["resent"] for node, health in final.items()}
    for node, health in final.items():
        store, spool = health["store"], health["spool"]
        assert store["failovers"] == 1 and store["refused"] == 0 and spool["lost_segments"] == 0, (node, health)
        leftovers = sorted(p.name for p in (servers.work / f"spool-{node}").rglob("*") if p.suffix in (".mp4",
                                                                                                       ".journal"))
        assert not leftovers, f"{node} stopped with segments it never got acknowledged: {leftovers}"
        assert not (servers.work / f"spool-{node}" / ".refused").exists()
        for cam in cameras[node]:
            rows = cluster.segments_of(cam)
            recorded = health["cameras"][cam]["recording"]["segments_spooled"]
            assert len(rows) >= recorded, f"{cam}: {len(rows)} segments indexed, {node} recorded {recorded} by then"
            gaps = [(b[0] - a[1]) / 1e6 for a, b in zip(rows, rows[1:], strict=False)]
            assert max(gaps) < CONTINUOUS_S, f"{cam}: a hole of {max(gaps):.2f} s in its coverage (lost footage)"
            for _, _, sha, path in rows:  # one object per row, holding the bytes the row names
                name = path.removeprefix("segments/")
                assert hashlib.sha256(objects.pop(name)).hexdigest() == sha, f"{name}: other bytes than its row's"
    assert not objects, f"objects no row names: {sorted(objects)[:5]}"
    assert sum(resent.values()) >= 1, f"the segment caught between PUT and row ({caught_name}) was not resent"
    assert len(cluster.rows("SELECT 1 FROM segments WHERE path = %s", "segments/" + caught_name)) == 1
    assert cluster.rows("SELECT COUNT(*) FROM segments")[0][0] == cluster.rows(
        "SELECT COUNT(DISTINCT (camera, start_us)) FROM segments")[0][0]
    checked = cluster.check("--deep")
    assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout + checked.stderr
    print(f"{sum(len(cluster.segments_of(c)) for c in every_camera)} segments of {len(every_camera)} cameras, each "
          f"indexed once, continuous; resent after the kill: {resent} ({caught_name} was between its PUT and its "
          "row); check --deep clean")


def fmt(seconds: dict[str, float]) -> str:
    return ", ".join(f"{node} {s:.2f}" for node, s in sorted(seconds.items()))


def wait_for_log(servers: Servers, name: str, words: str, count: int, timeout_s: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while len(lines := [ln for ln in servers.processes.log(name).splitlines() if words in ln]) < count:
        assert time.monotonic() < deadline, f"{name} never logged {words!r} {count} times"
        time.sleep(0.05)
    return lines


def spooled_header(spool: Path, camera: str, start_us: int) -> dict:
    return json.loads((spool / camera / f"{start_us}.json").read_text())


async def served(url: str, token: str, camera: str, start_us: int) -> dict[str, object]:
    """What the store's API shows of a camera around ``start_us``: its segments, timeline and a thumbnail."""
    around = {"from_us": start_us - 60_000_000, "to_us": start_us + 60_000_000}
    async with StoreClient(url, token=token) as client:
        listed = (await client.call("segments", cameras=[camera], **around))["items"]
        timeline = await client.call("timeline", camera=camera, bucket="minute", **around)
        try:
            thumbnail: object = await client.call("thumbnail", camera=camera, at_us=start_us + 500_000, width=160)
        except StoreError as exc:
            thumbnail = exc.code
    return {"segments": [s["start_us"] for s in listed], "recorded_us": timeline["recorded_us"],
            "thumbnail": thumbnail}


def test_a_store_killed_between_put_and_commit_leaves_an_object_nothing_serves_until_it_is_indexed_once(
        servers: Servers) -> None:
    """A (which pauses after each PUT) gets the first segment of two nodes and is SIGKILLed in the pause, the
    nodes first. ``resend``'s node comes back and sends its segment again, to B; ``orphan``'s spool is lost with
    its machine, so only ``sht store check --repair`` can account for its object."""
    cluster = start_cluster(servers, "between", ["resend", "orphan"], pause_a_s=PAUSE_S)
    spools = {node: servers.work / f"spool-{node}" for node in ("resend", "orphan")}
    nodes = {node: start_node(cluster, node, [f"{node}0"], spools[node]) for node in spools}
    paused = wait_for_log(servers, "between-store-a", STORED_UNINDEXED, 2)
    for proc, _ in nodes.values():
        proc.send_signal(signal.SIGKILL)
    cluster.store_a.send_signal(signal.SIGKILL)
    for proc, _ in nodes.values():
        proc.wait()
    cluster.store_a.wait()
    left = {line.split("segments/")[1].split(" ")[0] for line in paused}  # CAMERA/DAY/HOUR/<start_us>.mp4
    assert {name.split("/")[0] for name in left} == {"resend0", "orphan0"}, left
    starts = {name.split("/")[0]: int(name.rsplit("/", 1)[1].removesuffix(".mp4")) for name in left}

    objects = cluster.objects()
    assert set(objects) == left and cluster.rows("SELECT COUNT(*) FROM segments") == [(0,)]
    for camera, start in starts.items():  # in the bucket, but no footage as far as anyone asking the store knows
        assert asyncio.run(served(cluster.url_b, cluster.tokens["viewer"], camera, start)) == {
            "segments": [], "recorded_us": 0, "thumbnail": "no-footage"}, camera
    header = spooled_header(spools["resend"], "resend0", starts["resend0"])
    assert hashlib.sha256(objects[segment_name("resend0", starts["resend0"])]).hexdigest() == header["sha256"]
    shutil.rmtree(spools["orphan"])

    proc, url = start_node(cluster, "resend", ["resend0"], spools["resend"])  # A is dead: to B, the spool first
    deadline = time.monotonic() + 20
    while starts["resend0"] not in [row[0] for row in cluster.segments_of("resend0")]:
        assert time.monotonic() < deadline, get_json(url + "/health")["store"]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    rows = cluster.segments_of("resend0")
    first = rows[0]
    assert (first[0], first[2], first[3]) == (starts["resend0"], header["sha256"],
                                             "segments/" + segment_name("resend0", starts["resend0"]))
    assert [r[0] for r in rows].count(starts["resend0"]) == 1
    assert cluster.objects()[segment_name("resend0", starts["resend0"])] == objects[segment_name("resend0",
                                                                                                 starts["resend0"])]
    shown = asyncio.run(served(cluster.url_b, cluster.tokens["viewer"], "resend0", starts["resend0"]))
    assert shown["segments"][0] == starts["resend0"] and isinstance(shown["thumbnail"], dict), shown

    orphan = segment_name("orphan0", starts["orphan0"])
    found = cluster.check("--deep")
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"orphan: segments/{orphan}: no row points at this file" in found.stdout, found.stdout
    assert found.stdout.count("orphan: ") == 1, found.stdout  # the resent one is indexed: not an orphan
    repaired = cluster.check("--deep", "--repair")
    assert repaired.returncode == 1 and f"re-indexed orphan segments/{orphan}" in repaired.stdout, repaired.stdout
    assert "NOT repaired" not in repaired.stdout, repaired.stdout
    clean = cluster.check("--deep")
    assert clean.returncode == 0 and "clean" in clean.stdout, clean.stdout + clean.stderr
    ((start, _, sha, path),) = cluster.segments_of("orphan0")
    assert (start, path) == (starts["orphan0"], "segments/" + orphan)
    assert sha == hashlib.sha256(objects[orphan]).hexdigest()
    shown = asyncio.run(served(cluster.url_b, cluster.tokens["viewer"], "orphan0", starts["orphan0"]))
    assert shown["segments"] == [starts["orphan0"]] and shown["recorded_us"] > 0, shown
    assert "Traceback" not in servers.processes.log("between-store-b")
