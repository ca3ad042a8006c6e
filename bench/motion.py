"""Motion-detection benchmark (`just bench motion`): both detectors against scenario ground truth.

For every scene listed in bench/scenarios/motion.json the simulated camera renders
frames as fast as it can (no real-time pacing) at 1280x720; each frame goes to the
luma detector (its Y plane, decimated 4x) and, once encoded by the node's own
``H264Encoder``, to the motion-vector detector; each detector's samples go
through its own ``EventTracker``. Then:

- object scenes: an object's ground-truth interval (the frames it is visible in)
  is *found* when an event overlaps it (recall); an event is *true* when it
  overlaps any object's interval (precision); onset delay is ground-truth start
  of an activity (objects closer than ``quiet_s`` merged) to the start of the
  first event overlapping it;
- static scenes: every event is false; reported per hour of simulated video;
- CPU: ``time.thread_time`` around the detector call only (luma: decimation
  included), per frame at 1280x720, on one core;
- storage: the footage of each storage scene (``"storage": true`` in motion.json: activity20,
  13 short bursts in 10 minutes, and activity20_mixed, 30 minutes of a realistic mix from 5 s
  passers-by to 2.5 minutes of yard work) that ``motion`` recording mode keeps
  (``node.recording.roll.RecordingGate``, 5 s pre-roll, 10 s post-roll, 10 s segments trimmed to
  1 s keyframe intervals by node/recording/trim.py) vs continuous, from each detector's events over the
  fully rendered scene, like every other figure.

Prints rich tables and rewrites the "Motion detection" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.report import verdict
from node.capture.encode import H264Encoder
from node.motion import DetectorConfig, EventTracker, LumaDetector, MotionVectorDetector
from node.motion.vectors import open_decoder
from node.recording.roll import DEFAULT_POST_ROLL_S, DEFAULT_PRE_ROLL_S, RecordingGate
from node.sources.base import plane_view
from node.sources.scenario import load_scenario
from node.sources.synthetic import SyntheticSource
from shared.protocol.ingest import EventRecord

SCENES_DIR = Path(__file__).parent / "scenarios"
SECTION = "## Motion detection"
SEGMENT_S = 10.0
DETECTORS = ("luma", "vectors")
TARGETS = {"recall": 0.98, "precision": 0.95, "false_per_hour": 1.0, "onset_s": 0.5,
           "cpu_luma_ms": 1.0, "cpu_vectors_ms": 3.0, "saved": 0.60}


@dataclass
class Scene:
    name: str
    kind: str  # "objects" | "static"
    duration_s: float
    path: Path
    config: DetectorConfig
    storage: bool = False


@dataclass
class Run:
    """One detector over one scene."""

    events: list[EventRecord] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # per frame


@dataclass
class SceneResult:
    scene: Scene
    objects: list[tuple[float, float]]  # ground-truth visible intervals, seconds
    runs: dict[str, Run]
    decode: dict[str, float] | None = None  # full vs skipped reconstruction, ms per frame
    vectors_identical: bool | None = None


def load_scenes(sensitivity: float | None, only: list[str] | None) -> list[Scene]:
    manifest = json.loads((SCENES_DIR / "motion.json").read_text())
    scenes = []
    for i, entry in enumerate(manifest["scenes"]):
        path = SCENES_DIR / entry["scenario"]
        name = path.stem
        if only and name not in only:
            continue
        motion = dict(entry.get("motion", {}))
        if sensitivity is not None:
            motion["sensitivity"] = sensitivity
        config = DetectorConfig.from_json(motion, str(SCENES_DIR / "motion.json"), f"scenes[{i}].motion")
        scenes.append(Scene(name, entry["kind"], float(entry["duration_s"]), path, config,
                            bool(entry.get("storage", False))))
    return scenes


def ground_truth(src: SyntheticSource, frames: int, fps: float) -> list[tuple[float, float]]:
    """Per object: from the first frame it is visible in to just past the last one."""
    seen: dict[int, list[int]] = {}
    for i in range(frames):
        for index, *_ in src.ground_truth(i):
            seen.setdefault(index, []).append(i)
    return [(min(f) / fps, (max(f) + 1) / fps) for _, f in sorted(seen.items())]


def simulate(scene: Scene, width: int, height: int, fps: float, check_decode: bool) -> SceneResult:
    src = SyntheticSource(width, height, fps, load_scenario(str(scene.path)))
    frames = int(scene.duration_s * fps)
    cfg = scene.config
    luma = LumaDetector(*_lores(width, height), cfg.sensitivity, cfg.min_area, cfg.zones, fps)
    vectors = MotionVectorDetector(width, height, cfg.sensitivity, cfg.min_area, cfg.zones, fps)
    trackers = {k: EventTracker("cam0", "bench", cfg.start_frames, cfg.quiet_s) for k in DETECTORS}
    runs = {k: Run() for k in DETECTORS}
    encoder = H264Encoder(width, height, fps)
    decoders = {"full": open_decoder(False), "skip": open_decoder(True)} if check_decode else {}
    decode_s = dict.fromkeys(decoders, 0.0)
    identical = True if check_decode else None
    units = 0
    for i in range(frames):
        capture_us = round(i * 1_000_000 / fps)
        frame = src.read(i)
        t0 = time.thread_time()
        sample = luma.detect_frame(plane_view(frame, 0))
        runs["luma"].cpu_ms.append((time.thread_time() - t0) * 1000)
        runs["luma"].events += trackers["luma"].update(capture_us, sample)
        for unit in encoder.encode(frame, capture_us):
            t0 = time.thread_time()
            sample = vectors.feed(unit.data, unit.keyframe, unit.capture_us)
            runs["vectors"].cpu_ms.append((time.thread_time() - t0) * 1000)
            runs["vectors"].events += trackers["vectors"].update(unit.capture_us, sample)
            units += 1
            got = {}
            for name, dec in decoders.items():
                t0 = time.thread_time()
                out = dec.decode(av.Packet(unit.data))
                side = [f.side_data.get("MOTION_VECTORS") for f in out]
                got[name] = [s.to_ndarray() if s is not None else None for s in side]  # type: ignore[attr-defined]
                decode_s[name] += time.thread_time() - t0
            if decoders:
                identical = identical and _same_vectors(got["full"], got["skip"])
    end_us = round(frames * 1_000_000 / fps)
    for k in DETECTORS:
        runs[k].events += trackers[k].flush(end_us)
    decode = {k: v / max(1, units) * 1000 for k, v in decode_s.items()} if check_decode else None
    return SceneResult(scene, ground_truth(src, frames, fps), runs, decode, identical)


def _lores(width: int, height: int) -> tuple[int, int]:
    from node.motion import lores_size

    return lores_size(width, height)


def _same_vectors(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
        for x, y in zip(a, b, strict=True))


# ---- scoring ------------------------------------------------------------------------------


def merge(intervals: list[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    """Activity groups: intervals closer than ``gap`` become one (the tracker would merge them too)."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a < out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def overlaps(ev: EventRecord, a: float, b: float) -> bool:
    return ev.start_us / 1e6 < b and a < ev.end_us / 1e6


@dataclass
class Score:
    objects: int = 0
    found: int = 0
    events: int = 0
    true_events: int = 0
    onsets: list[float] = field(default_factory=list)
    end_lags: list[float] = field(default_factory=list)
    fragments: int = 0  # events beyond the first for one activity
    static_events: int = 0
    static_s: float = 0.0
    frames: int = 0
    cpu_ms: list[float] = field(default_factory=list)

    def add(self, result: SceneResult, detector: str) -> None:
        run = result.runs[detector]
        self.cpu_ms += run.cpu_ms
        if result.scene.kind == "static":
            self.static_events += len(run.events)
            self.static_s += result.scene.duration_s
            return
        quiet = result.scene.config.quiet_s
        self.objects += len(result.objects)
        self.found += sum(any(overlaps(e, a, b) for e in run.events) for a, b in result.objects)
        self.events += len(run.events)
        # The simulator makes an object vanish in place at its end (walking through a door): a change
        # both detectors see. An event that starts within quiet_s of that is the object's, not false.
        self.true_events += sum(any(overlaps(e, a, b + quiet) for a, b in result.objects) for e in run.events)
        for a, b in merge(result.objects, quiet):
            hits = [e for e in run.events if overlaps(e, a, b + quiet)]
            self.fragments += max(0, len(hits) - 1)
            if hits:
                self.onsets.append(hits[0].start_us / 1e6 - a)
                self.end_lags.append(hits[-1].end_us / 1e6 - b)

    @property
    def recall(self) -> float:
        return self.found / self.objects if self.objects else 1.0

    @property
    def precision(self) -> float:
        return self.true_events / self.events if self.events else 1.0

    @property
    def false_per_hour(self) -> float:
        return self.static_events / (self.static_s / 3600) if self.static_s else 0.0


GOP_S = 1.0  # the node's keyframe interval: trimming cuts at keyframes (node/recording/trim.py)


def storage_saved(intervals: list[tuple[float, float]], duration_s: float) -> float:
    """Fraction of footage that ``motion`` mode discards, with the node's own rules: held 10 s segments
    kept when an event wants them (node/recording/roll.py), each trimmed to the keyframe intervals it wants."""
    gate: RecordingGate[int] = RecordingGate()
    count = int(np.ceil(duration_s / SEGMENT_S))
    for k in range(count):
        gate.hold(int(k * SEGMENT_S * 1e6), int(min(duration_s, (k + 1) * SEGMENT_S) * 1e6), k)
    for a, b in intervals:
        gate.event_finished(int(a * 1e6), int(b * 1e6))
    keep, _ = gate.decide_spans(now_us=int((duration_s + 3600) * 1e6))
    kept_s = 0.0
    for _, (lo_us, hi_us) in keep:
        # From the keyframe at or before the span (GOPs start on whole seconds of the segment) to its end.
        kept_s += hi_us / 1e6 - np.floor(lo_us / 1e6 / GOP_S) * GOP_S
    return 1 - kept_s / duration_s


def burst_table(activity: float = 0.2, duration_s: float = 3600.0) -> list[tuple[float, float]]:
    """Storage saved at ``activity`` for evenly spaced bursts of one length (perfect detection)."""
    rows = []
    for burst in (5.0, 10.0, 30.0, 60.0, 120.0, 300.0):
        period = burst / activity
        starts = np.arange(period / 2, duration_s - burst, period)
        rows.append((burst, storage_saved([(float(t), float(t + burst)) for t in starts], duration_s)))
    return rows


# ---- report -------------------------------------------------------------------------------


def fmt_s(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f} ms"


def summary_rows(results: list[SceneResult]) -> list[tuple[str, dict[str, str], str, dict[str, bool | None]]]:
    """(metric, value per detector, target, pass per detector)."""
    scores = {d: Score() for d in DETECTORS}
    for r in results:
        for d in DETECTORS:
            scores[d].add(r, d)
    rows: list[tuple[str, dict[str, str], str, dict[str, bool | None]]] = []

    def row(metric: str, values: dict[str, str], target: str, ok: dict[str, bool | None] | None = None) -> None:
        rows.append((metric, values, target, ok or dict.fromkeys(DETECTORS)))

    t = TARGETS
    row("recall: objects found (object scenes)", {d: f"{s.recall:.3f} ({s.found}/{s.objects})"
                                                  for d, s in scores.items()},
        f"≥ {t['recall']}", {d: s.recall >= t["recall"] for d, s in scores.items()})
    row("precision: events that match an object", {d: f"{s.precision:.3f} ({s.true_events}/{s.events})"
                                                   for d, s in scores.items()},
        f"≥ {t['precision']}", {d: s.precision >= t["precision"] for d, s in scores.items()})
    row("false events per hour (static scenes)",
        {d: f"{s.false_per_hour:.1f} ({s.static_events} in {s.static_s / 60:.0f} min)" for d, s in scores.items()},
        f"≤ {t['false_per_hour']:g}", {d: s.false_per_hour <= t["false_per_hour"] for d, s in scores.items()})
    row("onset delay, median / max", {d: fmt_s(s.onsets) for d, s in scores.items()},
        f"< {t['onset_s'] * 1000:.0f} ms",
        {d: bool(s.onsets) and max(s.onsets) < t["onset_s"] for d, s in scores.items()})
    row("extra events: one activity split in several", {d: str(s.fragments) for d, s in scores.items()}, "")
    row("event end after the object left, median / max", {d: fmt_s(s.end_lags) for d, s in scores.items()}, "")
    cpu = {d: statistics.fmean(s.cpu_ms) for d, s in scores.items()}
    p99 = {d: float(np.percentile(s.cpu_ms, 99)) for d, s in scores.items()}
    row("CPU ms per frame at 1280x720, one core (mean; p99)",
        {d: f"{cpu[d]:.3f}; {p99[d]:.2f}" for d in DETECTORS}, "< 1 (luma), < 3 (vectors)",
        {"luma": cpu["luma"] < t["cpu_luma_ms"], "vectors": cpu["vectors"] < t["cpu_vectors_ms"]})
    for r in results:
        if r.scene.storage:
            activity = sum(b - a for a, b in merge(r.objects, 0.0)) / r.scene.duration_s
            ideal = storage_saved(merge(r.objects, 0.0), r.scene.duration_s)
            bursts = merge(r.objects, 1.0)  # objects handing over to each other are one burst
            typical = statistics.median(b - a for a, b in bursts)
            saved = {d: storage_saved([(e.start_us / 1e6, e.end_us / 1e6) for e in r.runs[d].events],
                                      r.scene.duration_s) for d in DETECTORS}
            row(f"storage saved by motion mode, {r.scene.name} ({r.scene.duration_s / 60:.0f} min, "
                f"{activity:.0%} activity in {len(bursts)} bursts, median {typical:.0f} s; "
                f"ground truth as events: {ideal:.0%})", {d: f"{v:.0%}" for d, v in saved.items()},
                f"≥ {t['saved']:.0%}", {d: v >= t["saved"] for d, v in saved.items()})
    return rows


def scene_rows(results: list[SceneResult]) -> list[list[str]]:
    out = []
    for r in results:
        cells = [r.scene.name, r.scene.kind, f"{r.scene.duration_s:g} s", str(len(r.objects))]
        for d in DETECTORS:
            s = Score()
            s.add(r, d)
            if r.scene.kind == "static":
                cells.append(f"{s.static_events} false")
            else:
                onset = f"{statistics.median(s.onsets) * 1000:.0f} ms" if s.onsets else "n/a"
                cells.append(f"{s.found}/{s.objects} found, {s.true_events}/{s.events} true, onset {onset}")
        out.append(cells)
    return out


def print_tables(rows: list, scenes: list[list[str]], decode: SceneResult | None) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped to a file or CI log: don't squeeze the table into 80 columns
    table = Table(title="Motion detection (just bench motion)")
    for col in ("metric", *DETECTORS, "target", "result"):
        table.add_column(col)
    for metric, values, target, ok in rows:
        result = " / ".join(verdict(ok[d]) for d in DETECTORS) if any(v is not None for v in ok.values()) else ""
        table.add_row(metric, *(values[d] for d in DETECTORS), target, result)
    console.print(table)
    per = Table(title="Per scene")
    for col in ("scene", "kind", "length", "objects", *DETECTORS):
        per.add_column(col)
    for cells in scenes:
        per.add_row(*cells)
    console.print(per)
    console.print("storage saved by motion mode at 20 % activity, perfect detection, evenly spaced bursts: "
                  + ", ".join(f"{b:g} s bursts {v:.0%}" for b, v in burst_table()))
    if decode is not None and decode.decode:
        console.print(f"vector decode on {decode.scene.name}: full {decode.decode['full']:.2f} ms/frame, "
                      f"skip_idct+skip_loop_filter {decode.decode['skip']:.2f} ms/frame; vectors identical: "
                      f"{decode.vectors_identical}")


def markdown(rows: list, scenes: list[list[str]], decode: SceneResult | None, args: argparse.Namespace,
             info: dict[str, str]) -> str:
    lines = [
        SECTION, "",
        "Generated by `just bench motion` (`python3 -m bench motion`, bench/motion.py); rerun it to refresh "
        "this section. Algorithms and parameters: [motion.md](motion.md).", "",
        f"Both detectors see the same simulated frames ({args.size} at {args.fps:g} fps, rendered as fast as "
        "they can be, no real-time pacing) of the scenes in bench/scenarios/ (listed in motion.json), with "
        "default settings (sensitivity 0.5, min_area 0.0005, start after 3 moving frames, end after 2 s of "
        "quiet) and the zones each scene's entry gives. An object counts as found when an event overlaps the "
        "interval it is visible in; an event is true when it overlaps any object's interval extended by "
        "quiet_s (the simulator makes objects vanish in place, like walking through a door, and a detector "
        "may see that change a frame later); an activity split into several events is counted separately. "
        "Onset delay: ground-truth "
        "start of an activity (objects less than quiet_s apart merged) to the start of the first event "
        "overlapping it. CPU: `time.thread_time` around the detector call only, per frame, one core (the "
        "luma figure includes decimating the 720p Y plane 4x; the vectors figure is the second, "
        "motion-vector-only decode of the camera's H.264). Storage, per storage scene (its own verdict): the "
        "10 s segments that each detector's events make `motion` mode keep "
        f"({DEFAULT_PRE_ROLL_S:g} s pre-roll, {DEFAULT_POST_ROLL_S:g} s post-roll, node/recording/roll.py's rule) "
        "against continuous recording.", "",
        f"Machine: {info.get('cpu', '?')}, {info.get('nproc', '?')} cores (shared and noisy), python "
        f"{info.get('python', '?')}, PyAV {info.get('PyAV', '?')}, {info.get('date', '?')}.", "",
        "| metric | luma | vectors | target | result |", "|---|---|---|---|---|",
    ]
    for metric, values, target, ok in rows:
        result = " / ".join(verdict(ok[d]) for d in DETECTORS) if any(v is not None for v in ok.values()) else ""
        lines.append(f"| {metric} | {values['luma']} | {values['vectors']} | {target} | {result} |")
    lines += ["", "Per scene:", "", "| scene | kind | length | objects | luma | vectors |", "|---|---|---|---|---|---|"]
    lines += [f"| {' | '.join(c)} |" for c in scenes]
    if decode is not None and decode.decode:
        lines += ["", f"Motion-vector decode cost on {decode.scene.name}: full reconstruction "
                  f"{decode.decode['full']:.2f} ms/frame, with `skip_idct=all` and `skip_loop_filter=all` "
                  f"{decode.decode['skip']:.2f} ms/frame; the exported vectors are "
                  f"{'bit-identical' if decode.vectors_identical else 'NOT identical'} (checked frame by frame)."]
    lines += ["", "Storage saved by `motion` mode at 20 % activity depends on how the activity is spread: "
              "evenly spaced bursts of one length, perfect detection, over an hour:", "",
              "| burst length | saved |", "|---|---|"]
    lines += [f"| {b:g} s | {v:.0%} |" for b, v in burst_table()]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the motion section, keeping the rest of the file as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    path.write_text(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench motion", description=__doc__.split("\n")[0])
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every scene's length (e.g. 0.2: a smoke run)")
    p.add_argument("--only", nargs="*", help="scene names (file stems) to run")
    p.add_argument("--sensitivity", type=float, default=None, help="override every scene's sensitivity")
    p.add_argument("--output", default="docs/benchmarks.md")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench.run import machine_info

    args = parse_args(argv)
    width, height = (int(x) for x in args.size.split("x"))
    info = machine_info(None)
    scenes = load_scenes(args.sensitivity, args.only)
    err = Console(stderr=True)
    results = []
    wall = time.monotonic()
    for k, scene in enumerate(scenes):
        scene.duration_s *= args.scale
        err.print(f"{scene.name}: {scene.duration_s:g} s of {args.size} at {args.fps:g} fps…")
        results.append(simulate(scene, width, height, args.fps, check_decode=k == 0))
    err.print(f"simulated {sum(s.duration_s for s in scenes):g} s of video in {time.monotonic() - wall:.0f} s")
    rows = summary_rows(results)
    per_scene = scene_rows(results)
    decode = results[0] if results else None
    print_tables(rows, per_scene, decode)
    if not args.no_write:
        write_section(Path(args.output), markdown(rows, per_scene, decode, args, info))
        err.print(f"wrote the motion section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
