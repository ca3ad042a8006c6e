"""Console playback (issue 18): the console's CPU while it plays recorded footage, at 1x and 8x, and pictures shown.

``python3 -m bench console-playback [--runs N] [--seconds S]`` (``just bench console-playback``):

1. Starts ``sht store`` and one ``sht node`` with one simulated camera (1280x720 at 15 fps by default, a
   keyframe a second, 2 s segments), lets it record ``--record`` seconds, then stops the node, so nothing
   but the store runs beside the console while it is measured.
2. Each run: ``ConsoleApp`` headless at 120x40 (half-block pictures, ``SHT_CONSOLE_IMAGES=halfcell``), the
   Playback screen opened on the recording (``p``'s screen, through the store's ``/recordings`` when it
   serves it, else an export), one second to settle, then ``--seconds`` at 1x; then back to the start,
   ``+`` three times for 8x, one second to settle and ``--seconds`` at 8x. In each window: the process's CPU
   time (``time.process_time()``: every thread of it, the decoding thread and the event loop with Textual's
   rendering) over the wall time, as % of one core; new pictures put on screen a second; frames decoded
   and converted to RGB a second (the player's counters). Each frame Textual outputs is also encoded into
   terminal escape sequences, as a real terminal needs (``bench.console.FrameProbe``), inside the window.
3. Prints medians over the runs, with the load average, and replaces the "## Console playback" section of
   docs/benchmarks.md. Target: under 25 % of one core at 1x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.processes import spawn_sht, stop_in_order
from bench.report import Row, cpu_model, replace_section, source_commit, verdict

SECTION = "## Console playback"
SIZE = (120, 40)
CPU_TARGET_1X = 25.0  # % of one core
SETTLE_S = 1.0
VIA = {"recordings": "over the store's `/recordings` (HTTP, read by PyAV/FFmpeg)",
       "export": "through an export to a temporary file (the store has no `/recordings`)"}


@dataclass
class Window:
    speed: int
    cpu_percent: float
    pictures_per_s: float
    decoded_per_s: float
    converted_per_s: float


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(url: str) -> dict[str, Any]:
    import json
    from urllib.request import urlopen

    with urlopen(url + "/health", timeout=3) as answer:
        return dict(json.loads(answer.read()))


def record(root: Path, args: argparse.Namespace, out: Console) -> tuple[Any, str, int, int]:
    """A store holding ``args.record`` seconds of one camera; returns (store process, URL, from_us, to_us)."""
    logs = root / "logs"
    logs.mkdir(parents=True)
    store_port, node_port = free_port(), free_port()
    url = f"http://127.0.0.1:{store_port}"
    store = spawn_sht(logs / "store.log", "store", "--root", str(root / "store"), "--host", "127.0.0.1",
                      "--port", str(store_port), "--no-auth", die_with_parent=True)
    node = None
    try:
        wait_for(lambda: health(url), 30, "the store")
        node = spawn_sht(logs / "node.log", "node", "--id", "node0", "--host", "127.0.0.1", "--port",
                         str(node_port), "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(root / "spool"),
                         "--segment-seconds", "2", "--size", args.camera_size, "--fps", str(args.fps),
                         "--camera", "cam0=synthetic", "--no-auth", die_with_parent=True)
        out.print(f"recording {args.record:g} s of cam0 ({args.camera_size} at {args.fps} fps)…")
        wait_for(lambda: health(url)["cameras"]["cam0"]["segments"] * 2 >= args.record, args.record + 60,
                 "the recording")
    except BaseException:
        stop_in_order([node, store])
        raise
    stop_in_order([node])
    cam = health(url)["cameras"]["cam0"]
    return store, url, int(cam["first_start_us"]), int(cam["last_end_us"])


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (OSError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.3)


async def until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def measure_run(url: str, from_us: int, to_us: int, seconds: float) -> tuple[list[Window], str]:
    """One app: ``seconds`` at 1x from the start, then ``seconds`` at 8x from the start."""
    from bench.console import FrameProbe
    from console.app import ConsoleApp
    from console.screens.playback import PlaybackRequest, PlaybackScreen

    windows = []
    with FrameProbe().installed():
        app = ConsoleApp(url, live_video=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.link_status.state == "connected", 20, "the store link")
            await app.push_screen(PlaybackScreen(PlaybackRequest("cam0", from_us, to_us, "bench")))
            screen = app.screen
            assert isinstance(screen, PlaybackScreen)
            await until(lambda: screen.picture is not None, 30, "the first picture")
            for speed, keys in ((1, ()), (8, ("left",) * 3 + ("plus",) * 3)):
                await pilot.press(*keys)
                await until(lambda s=speed: screen.picture is not None and screen.picture.speed == s, 10, "speed")
                await asyncio.sleep(SETTLE_S)
                player = screen.player
                assert player is not None
                shown0, decoded0, converted0 = screen.pictures_shown, player.counters.decoded, \
                    player.counters.converted
                cpu0, t0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(seconds)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
                assert screen.picture is not None and not screen.picture.ended, "the recording ran out: --record"
                windows.append(Window(speed, cpu / wall * 100, (screen.pictures_shown - shown0) / wall,
                                      (player.counters.decoded - decoded0) / wall,
                                      (player.counters.converted - converted0) / wall))
            via = screen.source.via if screen.source is not None else "?"
            app.exit()
    return windows, via


def rows_for(runs: list[list[Window]]) -> list[Row]:
    rows = []
    for i, speed in enumerate((1, 8)):
        ws = [run[i] for run in runs]
        cpu = statistics.median(w.cpu_percent for w in ws)
        each = ", ".join(f"{w.cpu_percent:.1f}" for w in ws)
        ok = cpu < CPU_TARGET_1X if speed == 1 else None
        rows += [
            Row(f"console CPU at {speed}x, % of one core (median; each run)", f"{cpu:.1f} ({each})",
                f"< {CPU_TARGET_1X:g}" if speed == 1 else "", ok),
            Row(f"pictures shown a second at {speed}x (median)",
                f"{statistics.median(w.pictures_per_s for w in ws):.1f}", "≤ 10", all(
                    w.pictures_per_s <= 10.5 for w in ws)),
            Row(f"frames decoded / converted to RGB a second at {speed}x (median)",
                f"{statistics.median(w.decoded_per_s for w in ws):.1f} / "
                f"{statistics.median(w.converted_per_s for w in ws):.1f}"),
        ]
    return rows


def markdown(rows: list[Row], args: argparse.Namespace, via: str, load: tuple[tuple[float, ...], ...]) -> str:
    lines = [
        "Generated by `just bench console-playback` (`python3 -m bench console-playback`, "
        "bench/console_playback.py); rerun it to refresh this section.", "",
        "### What is measured", "",
        f"- One simulated camera ({args.camera_size} at {args.fps} fps, a keyframe a second, 2 s segments) "
        f"recorded {args.record:g} s into a real `sht store`; the node is stopped before measuring, the store "
        "runs on the same machine.",
        f"- The console (`ConsoleApp`, headless at {SIZE[0]}x{SIZE[1]}, half-block pictures) opens the Playback "
        f"screen on it; footage {VIA.get(via, via)}. After {SETTLE_S:g} s to settle, {args.seconds:g} s at 1x from the "
        f"start, then back to the start and {args.seconds:g} s at 8x (keyframes only). {args.runs} runs, a new "
        "app each. CPU: the console process's CPU time (`time.process_time()`, all its threads: decoding, event "
        "loop, Textual's rendering, and each output frame encoded to terminal escape sequences as a real terminal "
        "needs) over the wall time, as % of one core.",
        "- Target (issue 18): under 25 % of one core at 1x; at most 10 pictures a second shown.", "",
        "### Machine", "",
        f"- {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {cpu_model()}, commit {source_commit()}",
        f"- load average (1/5/15 min) at start {' / '.join(f'{x:.2f}' for x in load[0])}, at the end "
        f"{' / '.join(f'{x:.2f}' for x in load[1])}; the machine is shared with other work.", "",
        "### Results", "",
        "| metric | measured | target | result |", "|---|---|---|---|",
        *[f"| {r.metric} | {r.value} | {r.target} | {verdict(r.ok)} |" for r in rows],
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench console-playback", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="apps measured (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds measured at each speed (default 5)")
    p.add_argument("--record", type=float, default=60.0, help="seconds recorded first (default 60)")
    p.add_argument("--camera-size", default="1280x720")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or args.record < 8 * args.seconds + 2 * SETTLE_S + 4:
        p.error("--runs at least 1, --seconds positive, --record at least 8 x --seconds + 6 (8x runs through it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from console.widgets.picture import RENDERER_ENV

    os.environ[RENDERER_ENV] = "halfcell"
    out = Console(stderr=True)
    start_load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sht-bench-playback-") as tmp:
        store = None
        try:
            store, url, from_us, to_us = record(Path(tmp), args, out)
            runs, via = [], "?"
            for i in range(args.runs):
                windows, via = asyncio.run(measure_run(url, from_us, to_us, args.seconds))
                runs.append(windows)
                out.print(f"run {i + 1}/{args.runs} (via {via}): " + "; ".join(
                    f"{w.speed}x {w.cpu_percent:.1f} % CPU, {w.pictures_per_s:.1f} pictures/s, "
                    f"{w.decoded_per_s:.1f} decoded/s" for w in windows) + f"; load {os.getloadavg()[0]:.2f}")
        except RuntimeError as exc:
            out.print(f"[red]bench console-playback: {exc}[/red]")
            return 1
        finally:
            stop_in_order([store])
    load = (start_load, os.getloadavg())
    rows = rows_for(runs)
    table = Table(title="SHT CCTV console playback")
    for col in ("metric", "measured", "target", "result"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.metric, r.value, r.target, verdict(r.ok))
    Console().print(table)
    out.print(f"load average at start {start_load[0]:.2f}, at the end {load[1][0]:.2f}")
    if not args.no_write:
        replace_section(args.output, SECTION, markdown(rows, args, via, load))
        out.print(f"wrote the {SECTION!r} section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
