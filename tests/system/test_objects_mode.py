"""The ``objects`` recording mode end to end: a real node and a real store (in this process, so the test can play
the store's object detection and push the verdicts itself over the real control link: a label for one event,
"none found" for the other)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from node.app import Node, NodeSecurity
from shared.config import CameraConfig, NodeConfig
from shared.security import SecurityOptions
from shared.settings import OBJECTS_MODE
from store.app import Store
from store.index import settings
from tests.system.test_motion import scenario, walker

S = 1_000_000
POST_ROLL = 4 * S  # shorter than in use (10 s), so that the two events' windows stay apart in a short test
TICK = 12  # µs: an MP4's time stamps are in 1/90000 s


async def until(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:.0f} s waiting for {what}"
        await asyncio.sleep(0.05)


def rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute(sql).fetchall()


async def test_objects_mode_keeps_the_labelled_events_footage_and_drops_the_one_found_empty(tmp_path):
    # Two people walk by: the store labels the first event and finds nothing in the second.
    scene = scenario(tmp_path / "two.json", [walker(5.0, 7.0), walker(19.0, 21.0)])
    root = tmp_path / "store"
    store = Store(root, security=SecurityOptions(auth=False))
    await store.start("127.0.0.1", 0)
    assert store.index is not None and store.server is not None
    server = store.server
    node = Node(NodeConfig(id="node0", store_url=f"ws://127.0.0.1:{store.port}", host="127.0.0.1", port=0,
                           spool_dir=str(tmp_path / "spool"), segment_seconds=1.0,
                           cameras=(CameraConfig(id="cam0", source=f"synthetic:{scene}", width=320, height=180,
                                                 fps=10),)),
                NodeSecurity(listen=SecurityOptions(auth=False)))
    # Every frame the camera captures, as the recorder sees it: what the stored footage is checked against.
    captured = node.master.cameras["cam0"].subscribe("test", 100_000)
    frames: list[int] = []

    async def collect() -> None:
        while (unit := await captured.get()) is not None:
            frames.append(unit.capture_us)

    collector = asyncio.create_task(collect())
    await node.start()
    gate = node.recording.gates["cam0"]
    gate.post_roll_us = POST_ROLL  # the grace stays as in use: only the verdict may let footage go
    try:
        await until(lambda: server.fleet.node_of("cam0") == "node0", 5, "the node's hello")
        # As an operator types it (a labels list as comma-separated text), once the store knows the camera.
        sht = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sht", "settings", "--store", f"http://127.0.0.1:{store.port}", "--camera", "cam0",
            "recording_mode=objects", "objects=person, car", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(sht.communicate(), 60)
        assert sht.returncode == 0, err.decode()
        assert 'objects ["person"] → ["person", "car"]' in out.decode()
        assert (await settings.load(store.index.conn, "cam0")).objects == ("person", "car")
        await until(lambda: node.recording.modes["cam0"] == OBJECTS_MODE, 5, "the store's settings")
        await until(lambda: rows(root, "SELECT start_us FROM events"), 15, "the first event, open, in the store")
        (first,), = rows(root, "SELECT start_us FROM events")
        assert gate.open_since_us == first and node.recording.store_reachable()
        assert await server.control.push_event_label("node0", "cam0", first, "person")
        await until(lambda: gate.labels.get(first) == "person", 5, "the label at the node")
        await until(lambda: len(rows(root, "SELECT start_us FROM events")) == 2, 20, "the second event")
        (second,) = (start for (start,) in rows(root, "SELECT start_us FROM events") if start != first)
        await until(lambda: gate.open_since_us is None, 10, "the second event to end")
        assert await server.control.push_event_label("node0", "cam0", second, None)  # analysed: none found
        await until(lambda: gate.labels.get(second, "") is None, 5, "the verdict at the node")
        await until(lambda: node.recording.discarded_quiet["cam0"] >= 5, 15, "the empty event's footage to go")
        assert node.recording.health("cam0").kept_without_verdict == 0
    finally:
        await node.stop()  # uploads what is left
        await store.stop()
        await asyncio.wait_for(collector, 10)  # the stream ended with the stop
    (first_end,), = rows(root, f"SELECT end_us FROM events WHERE start_us = {first}")
    kept = rows(root, "SELECT start_us, end_us FROM segments WHERE camera = 'cam0' ORDER BY start_us")
    assert kept, "the labelled event's footage reached the store"
    # Every frame captured within the labelled event's rolled window is stored, in one continuous run of
    # segments. (Not "the last segment ends at or after the post-roll's end": a segment ends one frame interval
    # after its last frame, and the next frame, captured some µs later than that, may come after the post-roll's
    # end and rightly go: then the stored footage ends a few µs short of it, with nothing lost.)
    window = (first - gate.pre_roll_us, first_end + POST_ROLL)
    wanted = [t for t in frames if window[0] <= t < window[1]]
    assert wanted and wanted[-1] > window[1] - S // 5, "the camera captured frames throughout the window"
    assert kept[0][0] <= first
    # (a segment trimmed to a keyframe within it starts at that frame's time as its MP4 holds it: a tick off)
    lost = [t for t in wanted if not any(start - TICK <= t < end for start, end in kept)]
    assert not lost, f"frames captured at {lost} within the event's window {window} were not stored"
    assert all(abs(b[0] - a[1]) < S // 5 for a, b in zip(kept, kept[1:], strict=False))
    # ... and nothing of the empty one beyond it (motion mode would keep it, from its 5 s of pre-roll on).
    assert second - 5 * S > first_end + POST_ROLL + S, "the scene must keep the two events' footage apart"
    assert kept[-1][1] <= first_end + POST_ROLL + 2 * S, "only up to the keyframe after the post-roll"
