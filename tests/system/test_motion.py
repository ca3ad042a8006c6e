"""Motion detection in a running node: events that match the scene, searchable; motion recording mode."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health

S = 1_000_000


def scenario(path: Path, objects: list[dict]) -> str:
    path.write_text(json.dumps({"seed": 7, "noise": 2.0, "illumination": {"period_s": 60, "amplitude": 0.05},
                                "objects": objects}))
    return str(path)


def walker(start: float, end: float) -> dict:
    return {"start": start, "end": end, "size": [30, 60], "from": [0.1, 0.6], "to": [0.9, 0.5], "luma": 230}


def run_system(processes: Processes, tmp: Path, cam0_scene: str):
    store_port, node_port = free_port(), free_port()
    root = tmp / "store"
    toks = tokens(root)
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port))
    wait_for_health(f"http://127.0.0.1:{store_port}", store)
    node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                           "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp / "spool"),
                           "--segment-seconds", "2", "--size", "320x180", "--fps", "10",
                           "--camera", f"cam0=synthetic:{cam0_scene}", "--camera", "cam1=synthetic:quiet",
                           token=toks["node"])
    wait_for_health(f"http://127.0.0.1:{node_port}", node)
    return store_port, node_port, node, root, toks


def rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.2)


def closed_events(root: Path, camera: str) -> int:
    return rows(root, f"SELECT COUNT(*) FROM events WHERE camera = '{camera}' AND kind = 'motion' AND open = 0")[0][0]


def sht(token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sht", *args, "--token", token], capture_output=True, text=True,
                          timeout=60)


def test_an_object_crossing_gives_one_event_covering_it_and_a_quiet_scene_none(processes, tmp_path):
    scene = scenario(tmp_path / "one.json", [walker(2.0, 5.0)])
    store_port, _, node, root, toks = run_system(processes, tmp_path, scene)
    # The object walks from 2 to 5 s; its event closes after the quiet period (by about 7.6 s).
    wait_for(lambda: closed_events(root, "cam0") >= 1, 30, "no closed motion event on cam0")
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    stream_start = rows(root, "SELECT MIN(start_us) FROM segments WHERE camera = 'cam0'")[0][0]
    events = rows(root, "SELECT camera, start_us, end_us, kind, score, bbox_x, thumb_us FROM events")
    assert [e[0] for e in events] == ["cam0"], events  # one event, and none on the quiet camera
    _, start, end, kind, score, bbox_x, thumb = events[0]
    assert kind == "motion" and 0 < score <= 1 and bbox_x is not None and start <= thumb <= end
    onset = (start - stream_start) / S - 2.0
    assert -0.2 <= onset <= 0.5, f"event starts {onset:.2f} s after the object appears"
    assert 5.0 <= (end - stream_start) / S <= 5.0 + 2.0 + 0.6, "ends after the quiet period"
    found = json.loads(sht(toks["viewer"], "search", "--store", f"http://127.0.0.1:{store_port}", "--events",
                           "--from", "5m ago", "--json").stdout)
    assert [(e["camera"], e["kind"], e["start_us"]) for e in found] == [("cam0", "motion", start)]


def test_motion_mode_keeps_only_footage_near_events(processes, tmp_path):
    scene = scenario(tmp_path / "late.json", [walker(9.0, 11.0)])
    store_port, node_port, node, root, toks = run_system(processes, tmp_path, scene)
    out = sht(toks["admin"], "settings", "--store", f"http://127.0.0.1:{store_port}", "--camera", "cam0",
              "recording_mode=motion")
    assert out.returncode == 0, out.stderr
    sht(toks["admin"], "settings", "--store", f"http://127.0.0.1:{store_port}", "--camera", "cam1",
        "recording_mode=motion")
    # The object walks from 9 to 11 s; its event closes after the quiet period (by about 13.6 s).
    def done() -> bool:
        cams = get_json(f"http://127.0.0.1:{node_port}/health")["cameras"]
        return (closed_events(root, "cam0") >= 1 and cams["cam1"]["recording"]["discarded_quiet"] >= 4
                and cams["cam0"]["recording"]["discarded_quiet"] >= 1)

    wait_for(done, 40, "no closed motion event on cam0 and quiet footage discarded")
    health = get_json(f"http://127.0.0.1:{node_port}/health")["cameras"]
    assert health["cam1"]["recording"]["discarded_quiet"] >= 4, "a quiet camera keeps (almost) nothing"
    assert health["cam0"]["recording"]["discarded_quiet"] >= 1, "quiet footage before the pre-roll goes"
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    (start, end), = rows(root, "SELECT start_us, end_us FROM events WHERE camera = 'cam0'")
    kept = rows(root, "SELECT start_us, end_us FROM segments WHERE camera = 'cam0' ORDER BY start_us")
    # Everything from 5 s before the event to its end is stored, in one continuous run.
    covering = [(s, e) for s, e in kept if e > start - 5 * S and s < end]
    assert covering[0][0] <= start - 5 * S + 2 * S and covering[-1][1] >= end
    assert all(abs(b[0] - a[1]) < S // 5 for a, b in zip(covering, covering[1:], strict=False))
    stream_start = kept[0][0]
    assert not [s for s, e in kept if stream_start + 3 * S < s and e < start - 5 * S], "quiet segments were dropped"
    quiet = rows(root, "SELECT COUNT(*) FROM segments WHERE camera = 'cam1'")[0][0]
    assert quiet <= 2, "only what was recorded before the mode switch"
