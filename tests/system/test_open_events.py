"""A real node and store: a motion event reaches the store's index while the motion is still going (open), and
is closed in place when it ends."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health
from tests.system.test_motion import rows, scenario, walker

S = 1_000_000


def run_system(processes: Processes, tmp: Path, cam0_scene: str) -> tuple[int, subprocess.Popen, Path]:
    """test_motion's store and node, with the store's object detection off: only the events' path is tested."""
    store_port, node_port = free_port(), free_port()
    root = tmp / "store"
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port),
                            "--detect", "off")
    wait_for_health(f"http://127.0.0.1:{store_port}", store)
    node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                           "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp / "spool"),
                           "--segment-seconds", "2", "--size", "320x180", "--fps", "10",
                           "--camera", f"cam0=synthetic:{cam0_scene}", token=tokens(root)["node"])
    wait_for_health(f"http://127.0.0.1:{node_port}", node)
    return node_port, node, root


def test_a_motion_event_is_in_the_index_open_while_the_motion_goes_on_then_closed(processes, tmp_path):
    scene = scenario(tmp_path / "long.json", [walker(2.0, 8.0)])  # 6 s of motion: three 2 s segments
    node_port, node, root = run_system(processes, tmp_path, scene)
    seen_open: tuple | None = None
    deadline = time.monotonic() + 30
    while seen_open is None and time.monotonic() < deadline:
        found = rows(root, "SELECT id, camera, start_us, open FROM events WHERE kind = 'motion'")
        if found:
            (seen_open,) = found
            seen_at_us = time.time_ns() // 1000
            active = get_json(f"http://127.0.0.1:{node_port}/health")["cameras"]["cam0"]["motion"]["active"]
        else:
            time.sleep(0.05)
    assert seen_open is not None, "no event reached the store"
    event_id, camera, start_us, is_open = seen_open
    assert (camera, is_open, active) == ("cam0", 1, True), "the store heard of it while the motion went on"
    # Sent at the start: in the index within a couple of seconds of the first frame with motion (the detector
    # needs a few frames to be sure; the 2 s segments are not waited for).
    assert seen_at_us - start_us < 2 * S, f"{(seen_at_us - start_us) / S:.2f} s after the motion began"
    time.sleep(max(0.0, (start_us + 8 * S) / S - time.time()))  # the walker leaves
    deadline = time.monotonic() + 20
    while rows(root, f"SELECT open FROM events WHERE id = {int(event_id)}") != [(0,)]:
        assert time.monotonic() < deadline, "the event was never closed"
        time.sleep(0.2)
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0
    (closed,) = rows(root, "SELECT id, start_us, end_us, open FROM events WHERE kind = 'motion'")
    assert closed[:2] == (event_id, start_us) and closed[2] > start_us + 4 * S and closed[3] == 0
