"""The store as the NAS, through its real API and the real CLI, on footage a real node recorded."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from shared.protocol.fleet import FleetReport
from shared.query_client import StoreClient
from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health

FPS = 5
RECORD_S = 18


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A store and a node that has recorded about 18 s of two cameras (2 s segments)."""
    tmp = tmp_path_factory.mktemp("nas")
    (tmp / "logs").mkdir()
    procs = Processes(tmp / "logs")
    store_port, node_port = free_port(), free_port()
    store = procs.start("store", "store", "--root", str(tmp / "store"), "--host", "127.0.0.1",
                        "--port", str(store_port))
    store_url = f"http://127.0.0.1:{store_port}"
    wait_for_health(store_url, store)
    node = procs.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                       "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp / "spool"),
                       "--segment-seconds", "2", "--size", "160x120", "--fps", str(FPS),
                       "--camera", "cam0=synthetic", "--camera", "cam1=synthetic:busy",
                       token=tokens(tmp / "store")["node"])
    node_url = f"http://127.0.0.1:{node_port}"
    wait_for_health(node_url, node)
    time.sleep(RECORD_S)
    ADMIN["token"] = tokens(tmp / "store")["admin"]  # sht() sends it as $SHT_TOKEN
    yield {"store": store_url, "node": node_url, "root": tmp / "store", "node_proc": node, "tmp": tmp,
           "admin": tokens(tmp / "store")["admin"]}
    procs.stop_all()


ADMIN: dict[str, str] = {}


def sht(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHT_TOKEN": ADMIN["token"]} if ADMIN else None
    proc = subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def index_rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute("SELECT camera, start_us, end_us, frames, size_bytes FROM segments "
                            "ORDER BY start_us, id").fetchall()


def test_search_lists_exactly_the_stored_segments_contiguous_per_camera(recorded):
    out = sht("search", "--store", recorded["store"], "--from", "10m ago", "--to", "now", "--json")
    items = json.loads(out.stdout)
    rows = index_rows(recorded["root"])
    assert [(i["camera"], i["start_us"], i["end_us"], i["frames"], i["bytes"]) for i in items] == rows
    assert all(i["start"].endswith("Z") and i["end"].endswith("Z") for i in items)
    for cam in ("cam0", "cam1"):
        mine = [i for i in items if i["camera"] == cam]
        assert len(mine) >= 6
        for a, b in zip(mine, mine[1:], strict=False):
            assert abs(b["start_us"] - a["end_us"]) < 1_000_000 / FPS
    one = json.loads(sht("search", "--store", recorded["store"], "--camera", "cam1", "--from", "10m ago",
                         "--json").stdout)
    assert {i["camera"] for i in one} == {"cam1"} and len(one) == len([r for r in rows if r[0] == "cam1"])
    table = sht("search", "--store", recorded["store"], "--from", "10m ago").stdout
    assert "cam0" in table and "segments" in table


def test_export_of_15_seconds_is_one_mp4_that_covers_the_window(recorded, tmp_path):
    rows = [r for r in index_rows(recorded["root"]) if r[0] == "cam0"]
    start = rows[1][1] + 700_000  # mid-GOP, mid-segment
    end = start + 15_000_000
    assert end <= rows[-1][2], "recorded long enough"
    out = tmp_path / "clip.mp4"
    sht("export", "--store", recorded["store"], "--camera", "cam0", "--from", f"@{start / 1e6:.6f}",
        "--to", f"@{end / 1e6:.6f}", "-o", str(out))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        duration_s = float(frames[-1].pts * stream.time_base) + 1 / FPS
    assert frames[0].key_frame
    # Starts on the keyframe at or before the window (1 s GOP), so it covers the whole window.
    assert 15 <= duration_s <= 15 + 1 + 2 / FPS
    assert len(frames) >= 15 * FPS
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    check = subprocess.run([ffmpeg, "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True)
    assert check.returncode == 0 and not check.stderr


def test_thumbnail_is_a_decodable_jpeg(recorded, tmp_path):
    out = tmp_path / "t.jpg"
    # 96 px snaps up to 160 (store/media/thumbs.py SNAP_WIDTHS), here the source's own width.
    result = sht("thumb", "--store", recorded["store"], "--camera", "cam1", "--at", "8s ago", "--width", "96",
                 "-o", str(out))
    data = out.read_bytes()
    assert data[:2] == b"\xff\xd8" and "160x120" in result.stdout
    with av.open(io.BytesIO(data)) as c:
        frame = next(c.decode(video=0))
    assert (frame.width, frame.height) == (160, 120)


def test_settings_changes_are_in_the_history_and_reach_the_node(recorded):
    store = recorded["store"]
    out = sht("settings", "--store", store, "--camera", "cam1", "--by", "tester",
              "recording_mode=motion", "motion_sensitivity=0.25")
    assert "pushed to node0" in out.stdout
    history = json.loads(sht("settings", "--store", store, "--history", "--json").stdout)
    assert [(h["camera"], h["key"], h["old"], h["new"], h["changed_by"]) for h in history[:2]] == [
        ("cam1", "motion_sensitivity", 0.5, 0.25, "tester"),
        ("cam1", "recording_mode", "continuous", "motion", "tester"),
    ]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        applied = get_json(recorded["node"] + "/health")["cameras"]["cam1"]["settings"]
        if applied.get("recording_mode") == "motion":
            break
        time.sleep(0.1)
    assert applied == {"recording_mode": "motion", "motion_sensitivity": 0.25, "retention_days": None,
                       "objects": ["person"], "min_score": 0.5, "threshold": 0.7, "notify": "objects",
                       "notify_labels": [], "notify_zones": [], "notify_cooldown_s": 60}
    bad = sht("settings", "--store", store, "--camera", "cam1", "recording_mode=sometimes", check=False)
    assert bad.returncode == 2 and "recording_mode must be one of" in bad.stderr


def test_errors_are_one_clear_line(recorded):
    unknown = sht("search", "--store", recorded["store"], "--camera", "nope", check=False)
    assert unknown.returncode != 0 and "no camera 'nope'" in unknown.stderr and unknown.stderr.count("\n") == 1
    bad_time = sht("thumb", "--store", recorded["store"], "--camera", "cam0", "--at", "tomorow", "-o", "x.jpg",
                   check=False)
    assert bad_time.returncode != 0 and "'tomorow' is not a time" in bad_time.stderr
    gone = sht("search", "--store", f"http://127.0.0.1:{free_port()}", check=False)
    assert gone.returncode != 0 and "cannot reach the store" in gone.stderr and gone.stderr.count("\n") == 1


def test_fleet_knows_the_node_and_sees_it_go_down(recorded):
    async def fleet():
        async with StoreClient(recorded["store"], token=recorded["admin"]) as client:
            return await client.call("fleet")

    up = asyncio.run(fleet())
    (node,) = up["nodes"]
    assert node["node"] == "node0" and node["state"] == "up" and node["cameras"] == ["cam0", "cam1"]
    assert node["url"].endswith(recorded["node"].rsplit(":", 1)[1])
    assert node["history"] and node["health"]["cameras"]["cam0"]["fps"] > 0
    assert up["cameras"]["cam1"]["settings"]["recording_mode"] == "motion"
    typed = FleetReport.from_json(up)  # the real answer is the typed message, key for key
    assert typed.to_json() == up and typed.nodes[0].health is not None and typed.nodes[0].history
    recorded["node_proc"].send_signal(signal.SIGKILL)
    recorded["node_proc"].wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and asyncio.run(fleet())["nodes"][0]["state"] != "down":
        time.sleep(0.2)
    assert asyncio.run(fleet())["nodes"][0]["state"] == "down"
