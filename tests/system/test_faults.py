"""Faults with real processes: the store away, nodes and stores killed, a small spool.

Invariants checked (docs/reliability.md): nothing the store acknowledged is
lost; no duplicates; every loss is counted; every indexed file is whole.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import av

from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health

FPS = 10
FRAME_US = 1_000_000 // FPS


def start_store(processes: Processes, root: Path, port: int, name: str = "store"):
    proc = processes.start(name, "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port))
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    return proc


def start_node(processes: Processes, tmp: Path, store_port: int, *extra: str, name: str = "node0",
               segment_seconds: float = 1, cameras: int = 2, store_root: Path | None = None):
    port = free_port()
    cams = [arg for i in range(cameras) for arg in ("--camera", f"cam{i}=synthetic")]
    proc = processes.start(
        name, "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(port),
        "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp / "spool"),
        "--segment-seconds", str(segment_seconds), "--size", "160x120", "--fps", str(FPS), *cams, *extra,
        token=tokens(store_root or tmp / "store")["node"])
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    return proc, url


def rows(root: Path, table: str = "segments") -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        if table == "segments":
            return conn.execute("SELECT camera, start_us, end_us, frames, path FROM segments "
                                "ORDER BY camera, start_us").fetchall()
        return conn.execute("SELECT camera, start_us, end_us, kind, detail FROM events WHERE kind = 'loss' "
                            "ORDER BY camera, start_us").fetchall()


def wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def spool_empty(node_url: str) -> bool:
    try:
        spool = get_json(node_url + "/health")["spool"]
    except OSError:
        return False
    return spool["segments"] == 0 and spool["events"] == 0


def assert_every_file_whole(root: Path) -> None:
    for _camera, _start, _end, frames, path in rows(root):
        with av.open(str(root / path)) as c:
            assert sum(1 for _ in c.decode(video=0)) == frames, path
    assert not list(root.rglob("*.tmp-*"))


def gaps(root: Path, camera: str) -> list[int]:
    mine = [r for r in rows(root) if r[0] == camera]
    return [b[1] - a[2] for a, b in zip(mine, mine[1:], strict=False)]


def test_store_away_for_a_while_then_back_loses_nothing(processes, tmp_path):
    store_port = free_port()
    node, node_url = start_node(processes, tmp_path, store_port)
    # Recording with no store at all, until a backlog of 3 s of both cameras.
    assert wait_until(lambda: (spool := get_json(node_url + "/health")["spool"])["segments"] >= 6
                      and spool["oldest_age_s"] >= 3, 20), get_json(node_url + "/health")["spool"]
    start_store(processes, tmp_path / "store", store_port)
    assert wait_until(lambda: spool_empty(node_url), 30), "the backlog drains once the store is back"
    # Recording goes on into the store that came back.
    assert wait_until(lambda: min(len([r for r in rows(tmp_path / "store") if r[0] == cam])
                                  for cam in ("cam0", "cam1")) >= 8, 20), rows(tmp_path / "store")
    health = get_json(node_url + "/health")
    assert health["spool"]["lost_segments"] == 0 and health["store"]["link"] == "connected"
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    for cam in ("cam0", "cam1"):
        assert len([r for r in rows(tmp_path / "store") if r[0] == cam]) >= 8
        assert all(abs(g) < FRAME_US for g in gaps(tmp_path / "store", cam)), "continuous coverage"
    assert_every_file_whole(tmp_path / "store")


def test_node_killed_and_restarted_loses_at_most_a_keyframe_interval(processes, tmp_path):
    store_port = free_port()
    root = tmp_path / "store"
    start_store(processes, root, store_port)
    node, node_url = start_node(processes, tmp_path, store_port, segment_seconds=4)
    time.sleep(6.5)  # mid-way through the second segment
    node.send_signal(signal.SIGKILL)
    node.wait(10)
    assert list((tmp_path / "spool").rglob("*.journal")), "the segment in progress was journalled"
    node, node_url = start_node(processes, tmp_path, store_port, segment_seconds=4, name="node0-again")
    time.sleep(2)
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    for cam in ("cam0", "cam1"):
        # The recovered part of the killed segment is stored; the only gap is the kill itself
        # (what had not reached the journal, at most about one 1 s keyframe interval) plus the restart.
        segs = [r for r in rows(root) if r[0] == cam]
        assert len(segs) >= 3
        assert sum(r[3] for r in segs[:2]) >= 5.5 * FPS, "the first 5.5 s survived the kill"
    assert_every_file_whole(root)
    check = processes_check(root)
    assert check.returncode == 0, check.stdout + check.stderr


def processes_check(root: Path):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sht", "store", "check", "--root", str(root), "--deep"],
                          capture_output=True, text=True, timeout=60)


def test_store_killed_during_heavy_ingest_keeps_no_duplicates_or_partial_files(processes, tmp_path):
    store_port = free_port()
    root = tmp_path / "store"
    store = start_store(processes, root, store_port)
    node, node_url = start_node(processes, tmp_path, store_port, cameras=4)
    for round_ in range(3):
        time.sleep(1.5)
        store.send_signal(signal.SIGKILL)
        store.wait(10)
        time.sleep(0.5)
        store = start_store(processes, root, store_port, name=f"store{round_}")
    assert wait_until(lambda: spool_empty(node_url), 30)
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    stored = rows(root)
    assert len(stored) == len({(r[0], r[1]) for r in stored}), "no duplicates"
    files = sorted(str(p.relative_to(root)) for p in (root / "segments").rglob("*.mp4"))
    assert files == sorted(r[4] for r in stored), "every file indexed, every row has its file"
    assert_every_file_whole(root)
    for cam in ("cam0", "cam1", "cam2", "cam3"):
        assert all(abs(g) < FRAME_US for g in gaps(root, cam)), "continuous coverage"


def test_small_spool_with_the_store_away_counts_every_loss_oldest_first(processes, tmp_path):
    store_port = free_port()
    node, node_url = start_node(processes, tmp_path, store_port, "--spool-max-bytes", "10k", cameras=1)
    assert wait_until(lambda: get_json(node_url + "/health")["spool"]["lost_segments"] > 0, 20), \
        "the small spool overflowed"
    health = get_json(node_url + "/health")["spool"]
    assert health["bytes"] <= 10 * 1024 and health["limit_bytes"] == 10 * 1024
    store = start_store(processes, tmp_path / "store", store_port)
    assert wait_until(lambda: spool_empty(node_url), 30)
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    root = tmp_path / "store"
    segments, losses = rows(root), rows(root, "events")
    assert losses and all(kind == "loss" and "spool full" in detail for *_, kind, detail in losses)
    lost_starts = [r[1] for r in losses]
    stored_starts = [r[1] for r in segments]
    assert max(lost_starts) < min(stored_starts), "the oldest were dropped, the newest kept"
    # Exact accounting: every segment the camera produced is either stored or reported lost.
    produced = sorted(lost_starts + stored_starts)
    spans = {r[1]: r[2] for r in segments} | {r[1]: r[2] for r in losses}
    for a, b in zip(produced, produced[1:], strict=False):
        assert abs(b - spans[a]) < FRAME_US, "no segment unaccounted for"
    assert not set(lost_starts) & set(stored_starts)
    store.send_signal(signal.SIGTERM)


def _mount_tmpfs(path: Path, size: str) -> bool:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_full_store_disk_refuses_clearly_and_recording_resumes_when_space_returns(processes, tmp_path):
    import subprocess

    import pytest

    disk = tmp_path / "nas"
    if not _mount_tmpfs(disk, "100M"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        store_port = free_port()
        root = disk / "store"
        store = start_store(processes, root, store_port)
        node, node_url = start_node(processes, tmp_path, store_port, store_root=root)
        assert wait_until(lambda: len(rows(root)) >= 4, 15), "segments acknowledged before the disk fills"
        acknowledged = rows(root)
        filler = disk / "filler"
        filler.write_bytes(bytes(60 * 1024 * 1024))  # leaves ~40 MB: under the store's 64 MiB floor
        assert wait_until(lambda: get_json(node_url + "/health")["spool"]["segments"] >= 2
                          and "disk-full" in (get_json(node_url + "/health")["store"]["last_error"] or ""), 15)
        health = get_json(node_url + "/health")
        assert health["spool"]["segments"] >= 2, "the node keeps spooling while the store refuses"
        assert "disk-full" in (health["store"]["last_error"] or "")
        assert "free space or lower retention" in (health["store"]["last_error"] or "")
        filler.unlink()
        assert wait_until(lambda: spool_empty(node_url), 30), "uploads resume when space returns"
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0
        final = rows(root)
        assert set(acknowledged) <= set(final), "nothing acknowledged was lost"
        assert get_json(f"http://127.0.0.1:{store_port}/health")["ingest"]["refused"] > 0
        for cam in ("cam0", "cam1"):
            assert all(abs(g) < FRAME_US for g in gaps(root, cam)), "continuous coverage"
        assert_every_file_whole(root)
        store.send_signal(signal.SIGTERM)
        store.wait(10)
    finally:
        processes.stop_all()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
