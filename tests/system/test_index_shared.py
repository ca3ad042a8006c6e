"""Two real ``sht store`` processes on one PostgreSQL index (issue 16, several stores): both answer from the same
rows, one holds the maintenance lease (retention, file deletion, summaries), and when it is SIGKILLed the other
takes the lease over within 30 s (PostgreSQL lets a dead session's advisory lock go; the others poll every 5 s)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.protocol.ingest import SegmentHeader
from store.index.db import Index
from tests.store.postgres import PostgresCluster
from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health
from tests.system.test_store_failover import share_key

START = 1_764_165_166_000_000  # 2025-11-26T13:52:46Z
TAKEOVER_LIMIT_S = 30.0


@pytest.fixture(scope="module")
def postgres(module_postgres: PostgresCluster) -> PostgresCluster:
    """The run's PostgreSQL (tests/servers.py): this module makes databases in it, never stops it."""
    return module_postgres


def start_store(processes: Processes, root: Path, name: str, index: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = processes.start(name, "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
                           "--detect", "off", "--index", index)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    return proc, url


async def add_row(index_url: str) -> None:
    index = await Index.open(index_url)
    try:
        await index.insert_segment(SegmentHeader(node="node0", camera="cam0", start_us=START,
                                                 end_us=START + 10_000_000, frames=150, bytes=1000,
                                                 sha256="0" * 64), "segments/cam0/x.mp4", START)
    finally:
        await index.close()


def test_two_stores_share_one_index_and_the_maintenance_lease_moves_when_its_holder_dies(
        processes: Processes, tmp_path: Path, postgres: PostgresCluster) -> None:
    index_url = postgres.create_database()
    a_root, b_root = tmp_path / "a", tmp_path / "b"
    viewer = tokens(a_root)["viewer"]  # makes A's key; B gets a copy, so both accept it
    share_key(a_root, b_root)
    proc_a, a = start_store(processes, a_root, "store-a", index_url)
    _, b = start_store(processes, b_root, "store-b", index_url)
    assert get_json(a + "/health")["index"] == {"backend": "postgresql", "maintenance": True}
    assert get_json(b + "/health")["index"] == {"backend": "postgresql", "maintenance": False}

    asyncio.run(add_row(index_url))  # as if A had ingested it: both answer with it
    for store in (a, b):
        found = subprocess.run([sys.executable, "-m", "sht", "search", "--store", store, "--token", viewer, "--json",
                                "--from", "@1764165100", "--to", "@1764165300"], capture_output=True, text=True,
                               timeout=30)
        assert found.returncode == 0, found.stderr
        assert [(s["camera"], s["start_us"]) for s in json.loads(found.stdout)] == [("cam0", START)]

    proc_a.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    while not get_json(b + "/health")["index"]["maintenance"]:
        assert time.monotonic() - killed < TAKEOVER_LIMIT_S, "B never took the maintenance lease over"
        time.sleep(0.2)
    print(f"maintenance lease taken over {time.monotonic() - killed:.1f} s after the SIGKILL")
