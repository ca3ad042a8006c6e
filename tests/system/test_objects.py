"""Issue 15 end to end: a real node plays real footage, a real store detects in it.

The node loops OpenCV's pedestrians (tests/data/vtest.mp4) on one camera and a
tree in the wind (tests/data/tree.mp4) on another, motion on; the store runs
its own detector (``--detect local``, the built-in person model in a child
process). A person event must become searchable by label, with a snapshot;
the tree's events must stay unlabelled. Then the detector process is killed:
recording and events go on, the store restarts it and says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

import psutil

from tests.system.conftest import free_port, get_json, processes, tokens, wait_for_health  # noqa: F401
from tests.system.test_webhooks import Receiver, check_signature

DATA = Path(__file__).resolve().parent.parent / "data"


def sht(*args: str, token: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SHT_TOKEN": token})


def search(store: str, token: str, *labels: str, camera: str | None = None) -> list[dict]:
    args = ["search", "--store", store, "--events", "--from", "1h ago", "--to", "now", "--json"]
    for label in labels:
        args += ["--label", label]
    if camera is not None:
        args += ["--camera", camera]
    done = sht(*args, token=token)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_person_in_real_footage_becomes_a_searchable_event_with_a_snapshot(processes, tmp_path):  # noqa: F811
    root = tmp_path / "store"
    store_port, node_port = free_port(), free_port()
    receiver = Receiver()  # a webhook: the person event is an alert (notify = objects, the default)
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port),
                            "--detect", "local", "--webhook", receiver.url("/hook"))
    url = f"http://127.0.0.1:{store_port}"
    wait_for_health(url, store, timeout=40)
    keys = tokens(root)
    node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                           "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp_path / "spool"),
                           "--segment-seconds", "2", "--camera", f"people=file:{DATA / 'vtest.mp4'}?loop=1",
                           "--camera", f"tree=file:{DATA / 'tree.mp4'}?loop=1", token=keys["node"])
    wait_for_health(f"http://127.0.0.1:{node_port}", node)

    person: dict | None = None
    deadline = time.monotonic() + 60
    while person is None and time.monotonic() < deadline:
        found = search(url, keys["viewer"], "person")
        person = next((e for e in found if e["snapshot"]), None)
        time.sleep(0.5)
    assert person is not None, f"no person event with a snapshot; detector: {get_json(url + '/health')['detect']}"
    assert person["camera"] == "people" and person["label"] == "person" and person["label_score"] >= 0.7
    assert person["labels"]["person"] >= 1 and len(person["label_box"]) == 4

    snapshot = tmp_path / "person.jpg"
    done = sht("snapshot", "--store", url, "--event", str(person["id"]), "-o", str(snapshot), token=keys["viewer"])
    assert done.returncode == 0, done.stderr
    jpeg = snapshot.read_bytes()
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9" and len(jpeg) > 5000

    # The webhook heard of the person (the update that brought the label: the alert), signed; its snapshot URL
    # serves the JPEG to a viewer token; the tree's unlabelled events are no alerts.
    try:
        alert = receiver.wait("/hook", 1, timeout=20)[0]
        check_signature(alert, (root / "webhook-secret").read_text().strip())
        after = alert.change["after"]
        assert (after["camera"], after["label"], after["alert"]) == ("people", "person", True), alert.change
        assert alert.change["type"] in ("new", "update") and after["labels"]["person"] >= 1
        if after["snapshot"] is None:  # the label is written a moment before the picture: the next POST has it
            pictured = receiver.wait("/hook", 2, timeout=20)[1]
            check_signature(pictured, (root / "webhook-secret").read_text().strip())
            assert pictured.change["type"] == "update" and pictured.change["before"]["snapshot"] is None
            after = pictured.change["after"]
        request = Request(url + after["snapshot"], headers={"Authorization": f"Bearer {keys['viewer']}"})
        with urlopen(request, timeout=5) as reply:
            assert reply.headers["Content-Type"] == "image/jpeg" and reply.read()[:2] == b"\xff\xd8"
    finally:
        receiver.close()
    assert {r.change["after"]["camera"] for r in receiver.at("/hook")} == {"people"}

    # The tree moved all along (its event stays open while the clip loops), and nobody was in it: analysed, and
    # no label.
    deadline = time.monotonic() + 30
    tree: list[dict] = []
    while not any(e["labels"] is not None for e in tree) and time.monotonic() < deadline:
        tree = search(url, keys["viewer"], camera="tree")
        time.sleep(0.5)
    analysed = [e for e in tree if e["labels"] is not None]
    assert analysed, f"no analysed tree event: {tree}; detector: {get_json(url + '/health')['detect']}"
    assert all(e["label"] is None and e["labels"] == {} for e in analysed), analysed
    assert search(url, keys["viewer"], "person", camera="tree") == []

    # Kill the detector process: recording and live go on, the store restarts it and counts it.
    health = get_json(url + "/health")
    before = health["detect"]
    assert before["state"] == "running" and before["frames"] > 0, before
    children = psutil.Process(store.pid).children()
    assert children, "the store runs its detector in a child process"
    segments_before = health["ingest"]["stored"]
    for child in children:
        child.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 40
    after = before
    while time.monotonic() < deadline:
        after = get_json(url + "/health")["detect"]
        if after["restarts"] >= 1 and after["frames"] > before["frames"] + 10:
            break
        time.sleep(0.5)
    assert after["restarts"] >= 1 and after["frames"] > before["frames"] + 10, after
    assert get_json(url + "/health")["ingest"]["stored"] > segments_before
    assert store.poll() is None and node.poll() is None
