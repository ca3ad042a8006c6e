"""A node process with two Pi cameras (tests/fakes/picamera2), one of which stalls for 10 s, and a real store:
the other camera records throughout, the stalled one is `stalled` in /health and /metrics, is reopened, and
the gap is a camera-stalled event in the store's index (issue 20)."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.request import urlopen

from tests.system.conftest import free_port, get_json, tokens, wait_for_health

FAKES = Path(__file__).parents[1] / "fakes"
S = 1_000_000


def rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def metric(url: str, name: str, camera: str) -> float:
    with urlopen(url + "/metrics", timeout=2) as r:
        text = r.read().decode()
    found = re.search(rf'^{name}(?:_total)?{{camera="{camera}"}} (\S+)$', text, re.M)
    assert found, f"{name} for {camera} not in /metrics"
    return float(found.group(1))


def start_store_and_node(processes, tmp_path: Path) -> tuple[Path, str, subprocess.Popen]:  # type: ignore[no-untyped-def]
    """A store, and a node with two fake Pi cameras (10 fps, 2 s segments) uploading to it; the node's URL."""
    store_port, node_port = free_port(), free_port()
    root = tmp_path / "store"
    toks = tokens(root)
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port))
    wait_for_health(f"http://127.0.0.1:{store_port}", store)
    node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                           "--no-auth", "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp_path / "spool"),
                           "--segment-seconds", "2", "--size", "320x240", "--fps", "10",
                           "--camera", "cam0=picamera2:0", "--camera", "cam1=picamera2:1", token=toks["node"])
    return root, f"http://127.0.0.1:{node_port}", node


def test_a_stalled_camera_is_reported_reopened_and_the_other_records_on(processes, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{FAKES}:{Path(__file__).parents[2]}")
    monkeypatch.setenv("FAKE_PICAMERA2_STALL", "1:3:10")  # cam1's frames stop 3 s after it starts, for 10 s
    root, url, node = start_store_and_node(processes, tmp_path)
    wait_for_health(url, node)

    def cameras() -> dict:
        return get_json(url + "/health")["cameras"]

    deadline = time.monotonic() + 15
    while (cams := cameras())["cam1"]["state"] != "stalled":
        assert time.monotonic() < deadline, cams["cam1"]
        time.sleep(0.2)
    assert "delivered no frame" in cams["cam1"]["error"] and cams["cam1"]["stalls"] == 1
    assert metric(url, "sht_camera_stalled", "cam1") == 1.0 and metric(url, "sht_camera_up", "cam1") == 0.0
    rates = []
    while (cams := cameras())["cam1"]["state"] == "stalled":
        before = cams["cam0"]["frames_encoded"]
        time.sleep(1.0)
        rates.append(cameras()["cam0"]["frames_encoded"] - before)
        assert len(rates) < 30, "cam1 was never reopened"
    assert cams["cam1"]["state"] == "up" and cams["cam0"]["state"] == "up"
    assert len(rates) >= 7 and min(rates) >= 7, rates  # cam0 at its 10 fps all along
    assert metric(url, "sht_camera_stalls", "cam1") == 1.0 and metric(url, "sht_camera_stalled", "cam1") == 0.0
    time.sleep(3)  # cam1 records again: a segment after the gap
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0

    (kind, is_open, start, end, detail), = rows(root, "SELECT kind, open, start_us, end_us, detail FROM events "
                                                     "WHERE camera = 'cam1' AND kind = 'camera-stalled'")
    assert is_open == 0 and 9.0 <= (end - start) / S <= 25.0 and "delivered no frame" in detail
    assert rows(root, "SELECT COUNT(*) FROM events WHERE camera = 'cam0' AND kind = 'camera-stalled'") == [(0,)]
    assert "camera cam1 STALLED" in processes.log("store")
    for camera, most in (("cam0", 0.5), ("cam1", None)):
        spans = rows(root, f"SELECT start_us, end_us FROM segments WHERE camera = '{camera}' ORDER BY start_us")
        gaps = [(b[0] - a[1]) / S for a, b in zip(spans, spans[1:], strict=False)]
        if most is not None:
            assert gaps and max(gaps) < most, gaps  # cam0 recorded throughout
        else:
            assert any(g >= 9.0 for g in gaps) and spans[-1][1] > end, gaps  # the gap, and footage after it


def test_a_camera_busy_at_start_does_not_stop_the_node_and_records_once_free(processes, tmp_path, monkeypatch):
    """A camera held by another process when the node starts (as a loose cable at boot would be missing): the
    node runs, its other camera records from the start, the busy one is `stalled` saying why, then opens."""
    monkeypatch.setenv("PYTHONPATH", f"{FAKES}:{Path(__file__).parents[2]}")
    monkeypatch.setenv("FAKE_PICAMERA2_BUSY", "1:6")  # camera 1 held by another process for the first 6 s
    root, url, node = start_store_and_node(processes, tmp_path)
    wait_for_health(url, node)  # the node serves: it did not stop on the busy camera
    cams = get_json(url + "/health")["cameras"]
    assert cams["cam1"]["state"] == "stalled" and cams["cam1"]["stalls"] == 1, cams["cam1"]
    assert "camera cam1: Picamera2 camera 1 is busy" in cams["cam1"]["error"]
    assert "stop it" in cams["cam1"]["error"]  # what to do
    assert metric(url, "sht_camera_stalled", "cam1") == 1.0 and metric(url, "sht_camera_up", "cam1") == 0.0
    deadline = time.monotonic() + 25
    while (cams := get_json(url + "/health")["cameras"])["cam1"]["state"] != "up":
        assert time.monotonic() < deadline and node.poll() is None, cams["cam1"]
        time.sleep(0.3)
    assert cams["cam0"]["state"] == "up" and cams["cam0"]["frames_encoded"] >= 40  # recording all along
    assert metric(url, "sht_camera_stalled", "cam1") == 0.0 and metric(url, "sht_camera_up", "cam1") == 1.0
    time.sleep(4)  # cam1 records: segments after the gap
    assert get_json(url + "/health")["cameras"]["cam1"]["frames_encoded"] >= 30
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0

    (is_open, start, end, detail), = rows(root, "SELECT open, start_us, end_us, detail FROM events "
                                               "WHERE camera = 'cam1' AND kind = 'camera-stalled'")
    assert is_open == 0 and 4.0 <= (end - start) / S <= 25.0 and "is busy" in detail
    assert "camera cam1 STALLED" in processes.log("store")
    cam0 = rows(root, "SELECT start_us, end_us FROM segments WHERE camera = 'cam0' ORDER BY start_us")
    cam1 = rows(root, "SELECT start_us, end_us FROM segments WHERE camera = 'cam1' ORDER BY start_us")
    assert cam0[0][0] <= start + 2 * S and cam1 and cam1[0][0] >= end - S  # cam0 from the start, cam1 once free
