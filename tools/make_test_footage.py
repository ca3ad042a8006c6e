"""Make tests/data/'s real footage: short H.264 excerpts of OpenCV's sample videos (Debian's opencv-doc).

    apt-get install opencv-doc
    python3 tools/make_test_footage.py            # writes tests/data/vtest.mp4 and tests/data/tree.mp4, then checks
    python3 tools/make_test_footage.py --check    # only checks the files that are there

``vtest.mp4``: 4 s of ``vtest.avi`` (pedestrians on a campus, 768x576, 10 fps) from 3.5 s, where the built-in
person model sees someone at >= 0.75 in every frame. ``tree.mp4``: the first 8 s of ``tree.avi`` (a tree in the
wind, 320x240, 19 frames unevenly spaced as in the original), nobody in it. Both H.264, no B-frames, a keyframe
every second (bench/footage.py), so a node passes them through as it would a camera's stream.

The check runs every frame through what the node and the store run: the node's motion detector with its
defaults (luma, node.motion) and ``shared.detect.Detector`` with the built-in model, and prints when the first
motion event opens, the frames with a person at 0.5 / 0.7 and the best person score. It fails (exit 1) when an
excerpt no longer does its job: no motion event in its first pass, or people missing from vtest / seen in tree.
The samples' licence note is tests/data/OPENCV-LICENSE.txt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.footage import INSTALL_HINT, excerpt, find_clip, open_clip, source_frames  # noqa: E402

OUT_DIR = ROOT / "tests" / "data"
EXCERPTS = {"vtest": (3.5, 4.0), "tree": (0.0, 8.0)}  # name -> (start s, seconds)
MAX_TOTAL_BYTES = 1_500_000


@dataclass
class Check:
    name: str
    frames: int
    first_event_s: float | None  # when the node's motion detector opens its first event (the event's start)
    person_05: int
    person_07: int
    best: float

    def problems(self) -> list[str]:
        out = [] if self.first_event_s is not None else [f"{self.name}: no motion event in one pass"]
        if self.name == "vtest" and self.person_07 < 0.9 * self.frames:
            out.append(f"vtest: a person >= 0.7 in only {self.person_07} of {self.frames} frames")
        if self.name == "tree" and self.person_05:
            out.append(f"tree: a person >= 0.5 in {self.person_05} frames")
        return out


def check(name: str, path: Path) -> Check:
    from node.motion.config import DetectorConfig, make_detector, make_tracker
    from node.sources.base import plane_view
    from shared.detect.detector import Detector

    detector = Detector(threads=1)
    frames = list(source_frames(path))
    first = frames[0][1]
    fps = (len(frames) - 1) / frames[-1][0] if len(frames) > 1 and frames[-1][0] > 0 else 10.0
    motion = make_detector(DetectorConfig(), first.width, first.height, fps)
    tracker = make_tracker(DetectorConfig(), "cam0", "node0")
    result = Check(name, len(frames), None, 0, 0, 0.0)
    for t, frame in frames:
        tracker.update(int(t * 1e6), motion.detect_frame(plane_view(frame, 0)))
        ongoing = tracker.ongoing()
        if ongoing is not None and result.first_event_s is None:
            result.first_event_s = ongoing.start_us / 1e6
        best = max((d.score for d in detector.detect(frame) if d.label == "person"), default=0.0)
        result.person_05 += best >= 0.5
        result.person_07 += best >= 0.7
        result.best = max(result.best, best)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--check", action="store_true", help="only check the excerpts already in --out")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    paths = {name: args.out / f"{name}.mp4" for name in EXCERPTS}
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sht-footage-") as tmp:
            for name, (start, seconds) in EXCERPTS.items():
                src = find_clip(name)
                if src is None:
                    print(f"{name}.avi not found: it is OpenCV's sample video from Debian's opencv-doc package "
                          f"({INSTALL_HINT})", file=sys.stderr)
                    return 2
                made = excerpt(open_clip(src, Path(tmp)), paths[name], start, seconds)
                print(f"{made.path}: {made.width}x{made.height}, {made.frames} frames, {made.duration_s:.1f} s, "
                      f"{made.bytes} bytes")
    problems: list[str] = []
    total = 0
    for name, path in paths.items():
        if not path.is_file():
            print(f"{path} does not exist: run without --check to make it", file=sys.stderr)
            return 2
        total += path.stat().st_size
        c = check(name, path)
        event = "none" if c.first_event_s is None else f"starts at {c.first_event_s:.2f} s"
        print(f"{name}: {c.frames} frames; first motion event {event}; person >= 0.5 in {c.person_05}, "
              f">= 0.7 in {c.person_07}; best {c.best:.2f}")
        problems += c.problems()
    if total > MAX_TOTAL_BYTES:
        problems.append(f"{total} bytes together, more than {MAX_TOTAL_BYTES}")
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
