"""Real footage in tests/data/ (OpenCV's vtest and tree, tools/make_test_footage.py): a node plays it and sees motion.

The excerpts are what the store's object detection is tested on (issue 15); these tests pin what that relies
on: a real node process passes both through as a camera's H.264, loops them, and its motion detector (the
default, luma) opens a motion event on each within a few seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import av

from tests.system.conftest import free_port, get_json, processes, wait_for_health  # noqa: F401  (fixture)

DATA = Path(__file__).resolve().parent.parent / "data"
CLIPS = {"vtest": DATA / "vtest.mp4", "tree": DATA / "tree.mp4"}
FRAMES = {"vtest": 40, "tree": 19}  # one pass of each excerpt


def test_the_excerpts_are_small_h264_with_the_opencv_licence_note() -> None:
    assert sum(p.stat().st_size for p in CLIPS.values()) < 1_500_000
    for name, path in CLIPS.items():
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            packets = [p for p in c.demux(stream) if p.size]
            assert stream.codec_context.name == "h264" and len(packets) == FRAMES[name]
            assert stream.codec_context.max_b_frames == 0 or all(p.pts == p.dts for p in packets)
            assert packets[0].is_keyframe and sum(p.is_keyframe for p in packets) >= 4  # a keyframe about every s
    with av.open(str(CLIPS["vtest"])) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (768, 576)
    note = (DATA / "OPENCV-LICENSE.txt").read_text()
    assert all(s in note for s in ("vtest.avi", "tree.avi", "Apache-2.0 AND BSD-3-Clause", "Intel Corporation",
                                   "Apache License", "Version 2.0", "tools/make_test_footage.py"))


def test_a_node_opens_motion_events_on_both_looping_clips(processes, tmp_path):  # noqa: F811
    port = free_port()
    cameras = [a for name, path in CLIPS.items() for a in ("--camera", f"{name}=file:{path}?loop=1")]
    proc = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(port), "--no-auth",
                           "--spool", str(tmp_path / "spool"), "--segment-seconds", "2", *cameras)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    started = time.monotonic()
    opened: dict[str, float] = {}
    looped = False
    while time.monotonic() - started < 12 and not (len(opened) == 2 and looped):
        health = get_json(url + "/health")["cameras"]
        for name in CLIPS:
            motion = health[name]["motion"]
            assert motion["error"] is None, motion
            if (motion["active"] or motion["events"]) and name not in opened:
                opened[name] = time.monotonic() - started
        looped = health["vtest"]["motion"]["frames"] > FRAMES["vtest"] + 5  # past the end: the loop goes on
        time.sleep(0.1)
    assert set(opened) == set(CLIPS), f"motion events opened on {sorted(opened)} only, health: {health}"
    assert all(s < 8 for s in opened.values()), opened
    assert looped, health["vtest"]
    for name in CLIPS:
        cam = health[name]
        assert (cam["state"], cam["mode"], cam["codec"]) == ("up", "passthrough", "h264"), cam
        assert cam["motion"]["detector"] == "luma"
    assert (health["vtest"]["width"], health["vtest"]["height"]) == (768, 576)
