"""``sht detect --store A,B`` (issue 16): one worker serves every store of a cluster at once.

Two ``sht store`` processes on one real PostgreSQL index (so one detector token, made by ``sht token create
--index``, is good on both), one worker given both: each store's /health counts it. Store A is SIGKILLed: the worker
keeps serving B and retries A on its own. A token neither store accepts ends the worker with one line naming both
stores and exit status 2.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.store.postgres import PostgresCluster
from tests.system.conftest import Processes, free_port, get_json, wait_for_health
from tests.system.test_detect_worker import wait_until
from tests.system.test_index_tokens import make_token


@pytest.fixture(scope="module")
def postgres(module_postgres: PostgresCluster) -> PostgresCluster:
    """The run's PostgreSQL (tests/servers.py): this module makes databases in it, never stops it."""
    return module_postgres


def start_store(processes: Processes, root: Path, name: str, index: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = processes.start(name, "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
                           "--detect", "local", "--index", index)
    wait_for_health(f"http://127.0.0.1:{port}", proc, timeout=40)
    return proc, f"127.0.0.1:{port}"


def test_one_worker_serves_every_store_of_the_cluster_and_outlives_one(
        processes: Processes, tmp_path: Path, postgres: PostgresCluster) -> None:
    index_url = postgres.create_database()
    detector_token, _ = make_token(index_url, "detector", "gpu-box")
    viewer_token, _ = make_token(index_url, "viewer", "tablet")
    store_a, a = start_store(processes, tmp_path / "a", "store-a", index_url)
    _, b = start_store(processes, tmp_path / "b", "store-b", index_url)

    def workers(store: str) -> int:
        return int(get_json(f"http://{store}/health")["detect"]["workers"])

    # Refused everywhere: started now (it loads the model first), its exit read at the end.
    refused = subprocess.Popen([sys.executable, "-m", "sht", "detect", "--store", f"ws://{a},ws://{b}",
                                "--token", viewer_token], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = processes.start("worker", "detect", "--store", f"ws://{a},ws://{b}", token=detector_token)
    wait_until("the worker connected to both stores", lambda: workers(a) == 1 and workers(b) == 1, 40,
               lambda: processes.log("worker"))
    assert get_json(f"http://{b}/health")["detect"]["mode"] == "workers"

    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("sht: error:")]
    assert len(lines) == 1 and a in lines[0] and b in lines[0] and "refused the token" in lines[0], stderr

    store_a.send_signal(signal.SIGKILL)
    wait_until("the worker retrying the killed store", lambda: f"ws://{a}/detect: " in processes.log("worker"), 15,
               lambda: processes.log("worker"))
    time.sleep(1.0)
    assert worker.poll() is None, processes.log("worker")
    assert workers(b) == 1, "the worker left the store that still runs when the other died"


