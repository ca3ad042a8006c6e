"""The object benchmark's event level summed up (bench/objects_summary.py) from made-up runs, and its reels
(bench/footage.py) made from tests/data/: no store, no node, no opencv-doc."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import bench.objects_events as oe
import bench.objects_summary as osum
from bench.footage import reel_pieces, transcode
from bench.report import replace_section

S = 1_000_000
DATA = Path(__file__).resolve().parent.parent / "data"
CLIP_OF = {"vtest1": "vtest", "vtest2": "vtest", "tree1": "tree"}


def item(event_id: int, camera: str, start_us: int, label: str | None = None, open_: bool | None = False,
         kind: str = "motion") -> dict:
    out = {"id": event_id, "camera": camera, "kind": kind, "start_us": start_us, "end_us": start_us + 5 * S}
    if open_ is not None:
        out["open"] = open_
    out["label"] = label
    return out


def test_observe_notes_when_an_event_and_its_label_first_come_back() -> None:
    seen: dict[int, osum.Sighting] = {}
    osum.observe(seen, item(1, "vtest1", 100 * S, open_=True), 100 * S + 300_000)
    osum.observe(seen, item(1, "vtest1", 100 * S, open_=True), 100 * S + 400_000)
    osum.observe(seen, item(1, "vtest1", 100 * S, "person", open_=True), 100 * S + 700_000)
    osum.observe(seen, item(1, "vtest1", 100 * S, "person", open_=False), 100 * S + 900_000)
    s = seen[1]
    assert (s.first_seen_us, s.label_seen_us, s.label, s.open) == (100 * S + 300_000, 100 * S + 700_000, "person",
                                                                     False)
    assert osum.settled(s, 100 * S + 900_000)
    # an older store: no "open" and no "label" keys at all
    old = {"id": 2, "camera": "tree1", "kind": "motion", "start_us": 5 * S, "end_us": 6 * S}
    osum.observe(seen, old, 7 * S)
    assert (seen[2].open, seen[2].label, seen[2].label_seen_us) == (None, None, None)
    assert not osum.settled(seen[2], 100 * S)  # never known to be closed: it stays in the poller's window


def test_clip_events_counts_the_window_the_wanted_label_and_the_latencies() -> None:
    seen: dict[int, osum.Sighting] = {}
    window = (100 * S, 200 * S)
    for event_id, cam, start, label, label_after_s in [
        (1, "vtest1", 99 * S, "person", 0.5),  # before the window: not counted
        (2, "vtest1", 110 * S, "person", 0.6),
        (3, "vtest2", 120 * S, "person", 1.5),
        (4, "vtest2", 130 * S, "car", 0.4),  # labelled, but not person
        (5, "vtest1", 140 * S, None, None),
        (6, "vtest1", 198 * S, "person", 0.5),  # too close to the window's end to count
        (7, "tree1", 150 * S, None, None),
        (8, "tree1", 160 * S, "person", 0.9),  # any label on the tree is wrong
    ]:
        osum.observe(seen, item(event_id, cam, start, open_=True), start + 200_000)
        if label is not None:
            osum.observe(seen, item(event_id, cam, start, label), start + int(label_after_s * S))
    osum.observe(seen, item(9, "vtest1", 150 * S, kind="gap"), 150 * S)  # not a motion event
    vtest = osum.clip_events(seen, CLIP_OF, "vtest", window, "person")
    assert (vtest.events, vtest.labelled) == (4, 2)
    assert vtest.label_latency_s == pytest.approx([0.6, 1.5])
    assert vtest.known_latency_s == pytest.approx([0.2] * 4)
    assert vtest.open_at_end == 1  # event 5 was only ever seen open
    tree = osum.clip_events(seen, CLIP_OF, "tree", window, None)
    assert (tree.events, tree.labelled) == (2, 1)


def test_backlog_grows_only_when_the_last_third_is_clearly_above_the_first() -> None:
    assert not osum.backlog_grows([0, 1, 0, 2, 0, 1, 0, 1, 2])
    assert not osum.backlog_grows([5, 5, 5])  # too few samples to say
    assert osum.backlog_grows([0, 0, 1, 3, 5, 7, 9, 10, 10])


def made_run(vtest_labelled: int, vtest_events: int, tree_labelled: int, latency_s: float) -> osum.DeviceRun:
    run = osum.DeviceRun("cpu", clip_of=dict(CLIP_OF), window=(0, 1000 * S), elapsed_s=120.0, labels_seen=True,
                         frames=1200, dropped=6, errors=0, restarts=0, detector_cpu_s=12.0, store_cpu_s=6.0,
                         queue=[0, 1, 0, 2, 1, 0],
                         queue_limit=30, health={"provider": "CPUExecutionProvider", "inference_ms_p50": 8.9,
                                                  "inference_ms_p99": 11.0})
    for i in range(vtest_events):
        start = (10 + i) * S
        osum.observe(run.sightings, item(i, "vtest1", start, open_=True), start + 100_000)
        if i < vtest_labelled:
            osum.observe(run.sightings, item(i, "vtest1", start, "person"), start + int(latency_s * S))
    for i in range(10):
        start = (500 + i) * S
        osum.observe(run.sightings, item(100 + i, "tree1", start, "person" if i < tree_labelled else None),
                     start + 100_000)
    return run


def test_event_rows_give_values_per_device_and_verdicts_against_the_targets(tmp_path: Path) -> None:
    good = made_run(19, 20, 0, 0.6)
    missing = osum.DeviceRun("cuda", problem="onnxruntime here offers CPUExecutionProvider only")
    rows = {m: (values, target, ok) for m, values, target, ok in osum.event_rows([good, missing])}
    assert rows["device / provider"][0] == ["cpu / CPUExecutionProvider",
                                            "cuda: onnxruntime here offers CPUExecutionProvider only"]
    assert rows["vtest motion events labelled person"] == (["19 / 20 (95%)", "-"], ">= 95%", True)
    assert rows["tree motion events labelled (any label)"] == (["0 / 10 (0%)", "-"], "0", True)
    latency = rows["event start -> label queryable, p50 / p99 (vtest)"]
    assert latency[0][0] == "0.60 / 0.60 s (n=19)" and latency[2] is True
    assert rows["frames analysed (per second)"][0][0] == "1200 (10.0/s)"
    assert rows["frames analysed per second per core (detector process)"][0][0] == "100"
    assert rows["frames analysed per second per core (store + detector)"][0][0] == "67"
    assert rows["CPU, cores busy: detector / store"][0][0] == "0.10 / 0.05"
    assert rows["frames dropped (detector busy)"][0][0] == "6 / 1206 (0%)" and rows["frames dropped (detector busy)"][2]
    assert rows["detector errors / restarts"] == (["0 / 0", "-"], "0 / 0", True)

    bad = made_run(18, 20, 1, 1.5)
    rows = {m: (values, ok) for m, values, _, ok in osum.event_rows([bad])}
    assert rows["vtest motion events labelled person"] == (["18 / 20 (90%)"], False)
    assert rows["tree motion events labelled (any label)"] == (["1 / 10 (10%)"], False)
    assert rows["event start -> label queryable, p50 / p99 (vtest)"][1] is False

    broken = made_run(0, 20, 0, 0.0)
    broken.errors, broken.health["last_error"] = 3199, "TypeError: detect() got an unexpected keyword argument"
    rows = {m: (values, ok) for m, values, _, ok in osum.event_rows([broken])}
    assert rows["detector errors / restarts"] == (["3199 / 0 (last: TypeError: detect() got an unexpected keyword "
                                                   "argument)"], False)

    unlabelled = made_run(0, 20, 0, 0.0)
    unlabelled.labels_seen = False  # a store without labels passes nothing, the tree's 0 included
    rows = {m: ok for m, _, _, ok in osum.event_rows([unlabelled])}
    assert rows["tree motion events labelled (any label)"] is False

    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Objects\n\ndetector level\n\n## Store\n\nstore\n")
    replace_section(page, osum.EVENTS_SECTION, osum.events_markdown(osum.event_rows([good, missing]), ["cpu", "cuda"],
                                                                   {"cpu": "test"}, "3 + 3 cameras."))
    text = page.read_text()
    assert "detector level" in text and "store" in text and text.count("## Objects: events\n") == 1
    assert "| metric | cpu | cuda | target | result |" in text and "| pass |" in text


def test_devices_auto_is_cpu_and_cuda_which_runs_where_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    (cpu, no_reason), (cuda, why) = oe.devices_to_run("auto")  # cuda's column says why it did not run
    assert (cpu, no_reason, cuda) == ("cpu", None, "cuda") and why is not None and "onnxruntime-gpu" in why
    assert oe.devices_to_run("cpu") == [("cpu", None)]
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert oe.devices_to_run("auto") == [("cpu", None), ("cuda", None)]


def test_detect_health_is_read_where_the_store_puts_it() -> None:
    assert oe.detect_health({"detect": {"queue": 1}}) == {"queue": 1}
    assert oe.detect_health({"detector": {"queue": 2}}) == {"queue": 2}
    assert oe.detect_health({"cameras": {}}) == {}


def test_reel_pieces_cover_the_clip() -> None:
    assert reel_pieces(13.0, 6.0) == [(0.0, 6.0), (6.0, 12.0), (12.0, pytest.approx(13.001))]
    with pytest.raises(ValueError, match="positive"):
        reel_pieces(10.0, 0)


def test_a_reel_holds_each_piece_then_its_last_frame_still(tmp_path: Path) -> None:
    made = transcode(DATA / "vtest.mp4", tmp_path / "reel.mp4", [(0.0, 2.0), (2.0, 4.0)], gap_s=1.0)
    assert (made.pieces, made.frames, made.duration_s) == (2, 60, 6.0)  # 2 x (20 frames + 10 still)
    with av.open(str(made.path)) as c:
        stream = c.streams.video[0]
        packets = [p for p in c.demux(stream) if p.size]
        times = [round(float(p.pts * p.time_base), 3) for p in packets]
        keyframes = [t for p, t in zip(packets, times, strict=True) if p.is_keyframe]
    assert times[:3] == [0.0, 0.1, 0.2] and times[-1] == 5.9
    assert keyframes == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    with av.open(str(made.path)) as c:
        luma = [f.to_ndarray()[: f.height].astype(np.int16) for f in c.decode(video=0)]
    still = [float(np.abs(a - b).mean()) for a, b in zip(luma[20:29], luma[21:30], strict=True)]
    moving = [float(np.abs(a - b).mean()) for a, b in zip(luma[:19], luma[1:20], strict=True)]
    assert max(still) < 0.05 and min(moving) > 0.5, (still, moving)  # held: the same picture, decoded
