"""Issue 15, the worker path end to end: ``sht detect --store URL`` takes the store's detection while it is
connected, and the store's own detector takes it back when the worker dies or hangs.

One store (``--detect local``), one node playing a reel of real pedestrians (tests/data/vtest.mp4, 4 s of people
then 3 s held still, looped: a new motion event every 7 s), and worker processes as a user starts them, with a
token made by ``sht token create --role detector``. Steps, on the same store and node:

1. a worker connects: /health says mode "workers"; a person event becomes searchable by label, and every frame
   analysed went to the worker (``worker_frames`` grows, ``local_frames`` stays 0);
2. the worker is SIGKILLed: the store's own detector takes over within seconds (mode "local", ``local_frames``
   grows), a later event is labelled by it, and segments keep arriving;
3. a second worker is SIGSTOPped (a hung GPU driver, a swapped-out box): its frame fails after the store's
   timeout, the worker is dropped at once (not after a close handshake it cannot answer) and detection falls back
   to local; SIGCONT, and the worker reconnects by itself.

Tokens the store refuses (a viewer's, one another store signed) end a worker with one line and exit status 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.footage import transcode
from shared.auth import issue_token
from tests.system.conftest import free_port, get_json, processes, tokens, wait_for_health  # noqa: F401

DATA = Path(__file__).resolve().parent.parent / "data"
T = TypeVar("T")


def sht(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SHT_TOKEN"}
    if token is not None:
        env["SHT_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, timeout=60, env=env)


def person_events(store: str, token: str) -> list[dict]:
    done = sht("search", "--store", store, "--events", "--from", "1h ago", "--to", "now", "--label", "person",
               "--json", token=token)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_until(what: str, check: Callable[[], T], timeout_s: float, show: Callable[[], object]) -> T:
    """``check()``'s first truthy answer, polled; a failure says what was awaited and ``show()``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout_s:g} s: {show()}")
        time.sleep(0.25)


def test_a_worker_detects_for_the_store_and_the_store_takes_over_when_it_dies_or_hangs(processes, tmp_path):  # noqa: F811
    reel = tmp_path / "people.mp4"
    transcode(DATA / "vtest.mp4", reel, [(0.0, 4.05)], gap_s=3.0)  # 4 s of people, 3 s still: events come and go
    root = tmp_path / "store"
    store_port, node_port = free_port(), free_port()
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port),
                            "--detect", "local")
    url = f"http://127.0.0.1:{store_port}"
    wait_for_health(url, store, timeout=40)
    keys = tokens(root)
    made = sht("token", "create", "--root", str(root), "--role", "detector", "--subject", "gpu-box")
    assert made.returncode == 0, made.stderr
    detector_token = made.stdout.strip().splitlines()[-1]

    def detect() -> dict:
        return get_json(url + "/health")["detect"]

    # Refused tokens: started now, their exits read at the end (each loads the model first, as a worker does).
    foreign = issue_token(Ed25519PrivateKey.generate(), "detector", "stranger", 600)[0]
    refused = {role: subprocess.Popen([sys.executable, "-m", "sht", "detect", "--store", f"ws://127.0.0.1:{store_port}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "SHT_TOKEN": token})
               for role, token in (("viewer", keys["viewer"]), ("foreign", foreign))}

    worker = processes.start("worker", "detect", "--store", f"ws://127.0.0.1:{store_port}", token=detector_token)
    wait_until("the worker connected", lambda: detect()["workers"] == 1, 40, detect)
    health = detect()
    assert health["mode"] == "workers" and health["state"] == "running" and health["model"] == "person-ssdlite.onnx"

    processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                    "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp_path / "spool"),
                    "--segment-seconds", "2", "--camera", f"people=file:{reel}?loop=1", token=keys["node"])

    # 1. The worker does the work.
    wait_until("a person event", lambda: person_events(url, keys["viewer"]), 60, detect)
    health = detect()
    assert health["mode"] == "workers" and health["worker_frames"] >= 3, health
    assert health["local_frames"] == 0, f"the store's own detector worked while a worker was connected: {health}"
    assert "connected to" in processes.log("worker")

    # 2. The worker dies: the store's own detector takes over at once; recording goes on.
    stored_before = get_json(url + "/health")["ingest"]["stored"]
    worker.send_signal(signal.SIGKILL)
    killed_us = time.time_ns() // 1000
    wait_until("fallback to local", lambda: detect()["mode"] == "local", 5, detect)
    worker_frames = detect()["worker_frames"]
    wait_until("a person event labelled by the store's own detector",
               lambda: [e for e in person_events(url, keys["viewer"]) if e["start_us"] > killed_us], 30, detect)
    health = detect()
    assert health["local_frames"] >= 3 and health["worker_frames"] == worker_frames, health
    assert get_json(url + "/health")["ingest"]["stored"] > stored_before

    # 3. A worker that hangs: its frame fails after the timeout, it is dropped, the store's detector goes on.
    hung = processes.start("hung", "detect", "--store", f"ws://127.0.0.1:{store_port}", token=detector_token)
    wait_until("the second worker connected", lambda: detect()["workers"] == 1, 40, detect)
    wait_until("the second worker working", lambda: detect()["worker_frames"] > worker_frames, 20, detect)
    stored_before = get_json(url + "/health")["ingest"]["stored"]
    hung.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    before = detect()
    # The store's timeout (10 s) and a little: not its close handshake's 10 s more, and no frames thrown at it.
    def local_health() -> dict:
        health = detect()
        return health if health["mode"] == "local" else {}

    after = wait_until("fallback from the hung worker", local_health, 16, detect)
    assert after["workers"] == 0 and time.monotonic() - stopped >= 9, after
    assert after["errors"] == before["errors"] + 1, f"frames sent to the hung worker after its timeout: {after}"
    assert "did not answer within 10 s" in after["last_error"], after
    assert after["dropped"] > before["dropped"], f"10 s of frames waited for the hung worker: {after}"
    local_frames = after["local_frames"]
    wait_until("local frames after the hang", lambda: detect()["local_frames"] > local_frames + 5, 15, detect)
    assert get_json(url + "/health")["ingest"]["stored"] > stored_before
    hung.send_signal(signal.SIGCONT)
    wait_until("the hung worker back", lambda: detect()["workers"] == 1, 20, detect)

    detect_url = f"ws://127.0.0.1:{store_port}/detect"
    why = {"viewer": "403: a viewer token may not use /detect (needs detector)",
           "foreign": "401: invalid token (Signature verification failed); is it from this store?"}
    for role, process in refused.items():
        _, err = process.communicate(timeout=60)
        assert process.returncode == 2, (role, err)
        lines = err.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("sht detect: person-ssdlite.onnx on cpu"), (role, err)
        assert lines[1] == f"sht: error: {detect_url}: the store refused the token ({why[role]})", (role, err)
