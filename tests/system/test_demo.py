"""``sht demo`` as a user runs it: it records every camera and leaves nothing behind."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import psutil

from sht.demo import demo_camera_sources
from tests.system.conftest import free_base_port, get_json, port_is_free

DEMO_ARGS = ["--size", "320x180", "--fps", "10", "--segment-seconds", "1"]
MIN_PAIR_DIFFERENCE = 12.0  # mean absolute difference (0..255) of two cameras' first recorded frames, Y U V


def demo(root: Path, base: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sht", "demo", "--root", str(root), "--base-port", str(base),
         *DEMO_ARGS, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def leftovers(root: Path) -> list[psutil.Process]:
    """Processes still running that the demo started (their command line names its root)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(root) in cmd and "sht" in cmd and p.pid != psutil.Process().pid:
            found.append(p)
    return found


def assert_nothing_left(root: Path, base: int) -> None:
    deadline = time.monotonic() + 10
    while leftovers(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(root) == []
    assert all(port_is_free(base + d) for d in (0, 1, 2, 100))


def wait_until_serving(base: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            get_json(f"http://127.0.0.1:{base + 100}/health", 1)
            # Every node up with every camera encoding: a stop from here on has footage from each to keep.
            nodes = [get_json(f"http://127.0.0.1:{base + i}/health", 1) for i in range(3)]
            if all(cam.get("frames_encoded") for n in nodes for cam in n["cameras"].values()):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("demo never started serving")


def first_recorded_frames(segments: Path) -> dict[str, np.ndarray]:
    """Per camera, the first frame of its earliest stored segment (segments/CAMERA/DAY/HOUR/START_US.mp4) as YUV."""
    earliest: dict[str, Path] = {}
    for path in segments.rglob("*.mp4"):
        cam = path.relative_to(segments).parts[0]
        if cam not in earliest or int(path.stem) < int(earliest[cam].stem):
            earliest[cam] = path
    frames = {}
    for cam, path in earliest.items():
        with av.open(str(path)) as container:
            frames[cam] = next(container.decode(video=0)).to_ndarray(format="yuv420p").astype(np.int16)
    return frames


def test_headless_demo_records_every_camera_and_exits_cleanly(tmp_path):
    root, base = tmp_path / "demo", free_base_port()
    summary = tmp_path / "summary.json"
    proc = demo(root, base, "--headless", "--duration", "4", "--summary-json", str(summary))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    result = json.loads(summary.read_text())
    assert result["all_cameras_recorded"]
    assert sorted(result["cameras"]) == [f"cam{i}" for i in range(6)]
    for cam in result["cameras"].values():
        assert cam["segments"] >= 3 and cam["frames"] >= 30 and cam["frames_dropped"] == 0
        assert cam["live_frames"] > 0 and cam["p99_ms"] is not None
    text = out.decode()
    assert "demo summary" in text and "cam5" in text
    files = sorted((root / "store" / "segments").rglob("*.mp4"))
    assert len(files) == sum(c["segments"] for c in result["cameras"].values())
    for path in files:
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0
    # Six cameras, six places: no two cameras' first recorded pictures alike (issue 18)
    first = first_recorded_frames(root / "store" / "segments")
    assert sorted(first) == sorted(result["cameras"])
    alike = {(a, b): round(d, 1) for a, b in itertools.combinations(sorted(first), 2)
             if (d := float(np.abs(first[a] - first[b]).mean())) < MIN_PAIR_DIFFERENCE}
    assert alike == {}, f"cameras whose first recorded frames are alike: {alike}"
    assert_nothing_left(root, base)


def test_sigterm_stops_every_child(tmp_path):
    root, base = tmp_path / "demo", free_base_port()
    proc = demo(root, base, "--headless")
    wait_until_serving(base, proc)
    assert len(leftovers(root)) >= 5  # demo + store + 3 nodes
    sources = {cam: h["source"] for i in range(3)
               for cam, h in get_json(f"http://127.0.0.1:{base + i}/health", 1)["cameras"].items()}
    assert sources == demo_camera_sources()  # each camera its own scene, seed and phase
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "demo summary" in out.decode()
    assert_nothing_left(root, base)


def test_children_die_even_if_the_demo_is_killed(tmp_path):
    root, base = tmp_path / "demo", free_base_port()
    proc = demo(root, base, "--headless")
    wait_until_serving(base, proc)
    proc.kill()  # SIGKILL: no chance to clean up; the children's parent-death signal does it
    proc.wait(10)
    assert_nothing_left(root, base)


def test_interactive_demo_stops_on_ctrl_c(tmp_path):
    root, base = tmp_path / "demo", free_base_port()
    proc = demo(root, base)
    wait_until_serving(base, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    assert_nothing_left(root, base)
