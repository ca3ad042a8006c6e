"""The console benchmark (issue 4, item 5): first fleet paint, and frame time with six live tiles.

``python3 -m bench console [--runs N] [--duration S]`` (``just bench console``):

1. Starts the six-camera demo's fleet without its UI (``sht.demo.DemoProcesses``: a store and 3 nodes x 2
   simulated cameras, 1280x720 at 15 fps by default) and waits until the store's ``fleet`` API
   says all 3 nodes are up and lists all 6 cameras with their node.
2. **First paint**: ``ConsoleApp`` (admin token, as ``sht demo`` makes it) run headless at 120x40,
   N times, a new app each time. The clock starts before the app is constructed; a paint is a
   frame Textual hands to its output (``App._display``). Reported: the first paint at all (the
   header and the empty table) and the first paint whose fleet table holds a row for every camera.
   The same is measured N times in a fresh Python process (interpreter + imports + app), which is
   what an operator who types ``sht console`` waits for.
3. **Frame time**: a new app, ``l`` for the Live screen, wait until all six tiles show a decoded
   picture, then ``--duration`` seconds of tiles updating. Frame time is the wall time of each
   Textual screen update that produced output: layout when needed, the compositor's render of the
   changed widgets (the half-block pictures included) and the encoding of the update into terminal
   escape sequences (done here with a true-colour console, because a headless app skips that
   step). An asyncio ticker every 5 ms measures event-loop lag as a cross-check: anything that
   holds up the loop (message handlers, frames) delays input and the next frame by that much.
   Garbage-collector pauses are timed too (``gc.callbacks``), and each slow frame checked for one.
4. Prints a table with the targets and replaces the "## Console" section of docs/benchmarks.md.

Pictures are drawn with half blocks (``SHT_CONSOLE_IMAGES=halfcell``): there is no graphics terminal here.
The fleet is always stopped (``DemoProcesses.stop``) on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bench.report import Row, cpu_model, replace_section, verdict

if TYPE_CHECKING:
    from textual.app import App

SECTION = "## Console"
SIZE = (120, 40)
FIRST_PAINT_TARGET_S = 1.0
FRAME_P99_TARGET_MS = 50.0
TICK_S = 0.005  # the event-loop lag probe's period
REPO = Path(__file__).resolve().parents[1]
DEMO_CAMERAS = tuple(f"cam{i}" for i in range(6))


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# -- measuring frames from outside the app ------------------------------------------------------------------


class FrameProbe:
    """Times Textual's frames by wrapping three private methods, at class level, while installed.

    ``Screen._on_timer_update`` (the screen's update, at most ``TEXTUAL_FPS`` a second) and
    ``Screen._refresh_layout`` (a layout, from an update or a resize) are timed, outermost call only;
    a call counts as a frame when it reached ``App._display`` with something to show. A headless
    app's ``_display`` does not encode the update for a terminal, so the wrapper does that here
    (``CompositorUpdate.render_segments`` with a true-colour console) inside the frame's time.
    Listeners are called after each frame, outside its time, with the app, the screen and the clock.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, emulate_terminal: bool = True) -> None:
        self.clock = clock
        self.emulate_terminal = emulate_terminal
        self.frames_s: list[float] = []
        self.spans: list[tuple[float, float]] = []  # (start, end) of each frame, on ``clock``
        self.bytes: list[int] = []
        self.listeners: list[Callable[[Any, Any, float], None]] = []
        self._depth = 0
        self._shown: tuple[Any, Any] | None = None
        self._terminal = Console(color_system="truecolor", file=io.StringIO(), force_terminal=True,
                                 legacy_windows=False, width=SIZE[0], height=SIZE[1])

    def reset(self) -> None:
        self.frames_s.clear()
        self.spans.clear()
        self.bytes.clear()

    def _frame_done(self, started: float) -> None:
        ended = self.clock()
        shown, self._shown = self._shown, None
        if shown is None:
            return
        self.frames_s.append(ended - started)
        self.spans.append((started, ended))
        for listener in list(self.listeners):
            listener(*shown, ended)

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(screen: Any, *args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return original(screen, *args, **kwargs)
            self._depth += 1
            started = self.clock()
            try:
                return original(screen, *args, **kwargs)
            finally:
                self._depth -= 1
                self._frame_done(started)

        return wrapper

    def _display(self, original: Callable[..., Any]) -> Callable[..., Any]:
        from textual._compositor import CompositorUpdate

        def wrapper(app: Any, screen: Any, renderable: Any) -> None:
            outermost = self._depth == 0
            started = self.clock()
            original(app, screen, renderable)
            if renderable is None or app._batch_count:
                return
            if self.emulate_terminal and app.is_headless and isinstance(renderable, CompositorUpdate):
                self.bytes.append(len(renderable.render_segments(self._terminal).encode()))
            self._shown = (app, screen)
            if outermost:
                self._frame_done(started)

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Iterator[FrameProbe]:
        from textual.app import App
        from textual.screen import Screen

        saved = [(Screen, "_on_timer_update"), (Screen, "_refresh_layout"), (App, "_display")]
        originals = [(cls, name, cls.__dict__[name]) for cls, name in saved]
        Screen._on_timer_update = self._timed(Screen._on_timer_update)  # type: ignore[method-assign]
        Screen._refresh_layout = self._timed(Screen._refresh_layout)  # type: ignore[method-assign]
        App._display = self._display(App._display)  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for cls, name, original in originals:
                setattr(cls, name, original)


class FirstPaint:
    """Listens to a ``FrameProbe``: when the first frame was shown, and the first with every camera's row."""

    def __init__(self, cameras: Sequence[str]) -> None:
        self.wanted = {f"camera:{c}" for c in cameras}
        self.header_at: float | None = None
        self.fleet_at: float | None = None
        self.done = asyncio.Event()

    def __call__(self, app: Any, screen: Any, at: float) -> None:
        from console.screens.fleet import FleetScreen
        from console.widgets.link_header import LinkHeader
        from console.widgets.node_table import NodeTable

        if self.header_at is None and screen.query(LinkHeader):
            self.header_at = at
        if self.fleet_at is None and isinstance(screen, FleetScreen):
            tables = screen.query(NodeTable)
            if tables and self.wanted <= {k.value for k in tables.first().rows}:
                self.fleet_at = at
                self.done.set()


@dataclass
class Paint:
    header_s: float
    fleet_s: float


async def measure_first_paint(make_app: Callable[[], App], cameras: Sequence[str], *, size: tuple[int, int] = SIZE,
                              limit_s: float = 20.0, clock: Callable[[], float] = time.perf_counter,
                              started: float | None = None) -> Paint:
    """Start an app (``make_app`` is timed too) and wait for its first paint with a row for every camera."""
    probe = FrameProbe(clock)
    paint = FirstPaint(cameras)
    probe.listeners.append(paint)
    with probe.installed():
        t0 = clock() if started is None else started
        app = make_app()
        async with app.run_test(size=size):
            try:
                await asyncio.wait_for(paint.done.wait(), limit_s)
            except TimeoutError:
                raise RuntimeError(f"no fleet paint with rows for {sorted(paint.wanted)} within {limit_s:g} s "
                                   f"(header painted: {paint.header_at is not None})") from None
            app.exit()
    assert paint.header_at is not None and paint.fleet_at is not None
    return Paint(paint.header_at - t0, paint.fleet_at - t0)


def measure_cold_paint(store_url: str, token: str | None, cameras: Sequence[str], size: tuple[int, int] = SIZE,
                       timeout: float = 60.0) -> Paint:
    """The same in a new Python process: from just before it is spawned (wall clock) to its paints."""
    env = {**os.environ, "SHT_TOKEN": token} if token else dict(os.environ)  # never on a command line
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "bench.console", "--child-paint", "--store", store_url,
         "--cameras", ",".join(cameras), "--size", f"{size[0]}x{size[1]}"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"the cold-start child failed ({out.returncode}): {out.stderr[-2000:]}")
    walls = json.loads(out.stdout.strip().splitlines()[-1])
    return Paint(walls["header"] - started, walls["fleet"] - started)


def _child_paint(args: argparse.Namespace) -> int:
    from console.app import ConsoleApp

    started = time.time()  # paints are reported as wall-clock times; the parent subtracts its own start
    token = os.environ.get("SHT_TOKEN") or None
    paint = asyncio.run(measure_first_paint(lambda: ConsoleApp(args.store, token=token), args.cameras.split(","),
                                            size=args.size, clock=time.time, started=started))
    print(json.dumps({"header": started + paint.header_s, "fleet": started + paint.fleet_s}))
    return 0


@dataclass
class Live:
    frames_ms: list[float]
    bytes_per_frame: list[int]
    lag_ms: list[float]
    updates: dict[str, int]  # pictures shown per camera in the window
    update_to_paint_ms: list[float]  # a decoded picture handed to its tile → the frame that shows it
    window_s: float
    cpu_s: float  # CPU of this process (UI, decode threads) in the window
    all_live_s: float | None  # `l` pressed → every tile showing a picture (None when not waited for)
    gc_ms: list[tuple[int, float]] = field(default_factory=list)  # (generation, pause) of each collection
    slow_frames: int = 0  # frames over the p99 target
    slow_frames_in_gc: int = 0  # of those, the ones a full (generation 2) collection ran inside
    tracked_objects: int = 0  # objects the collector tracks, at the end of the window


class GcPauses:
    """Collections of the cyclic garbage collector in this process, timed with ``gc.callbacks``, while installed."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.pauses: list[tuple[int, float, float]] = []  # (generation, start, end)
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self.clock()
        else:
            self.pauses.append((info["generation"], self._started, self.clock()))

    @contextlib.contextmanager
    def installed(self) -> Iterator[GcPauses]:
        gc.callbacks.append(self._callback)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._callback)

    def full_inside(self, start: float, end: float) -> bool:
        return any(g == 2 and start <= s and e <= end for g, s, e in self.pauses)


@dataclass
class _LiveCounters:
    probe: FrameProbe
    updates: dict[str, int] = field(default_factory=dict)
    pending: list[float] = field(default_factory=list)
    to_paint_ms: list[float] = field(default_factory=list)
    counting: bool = False

    def shown(self, camera: str) -> None:
        if self.counting:
            self.updates[camera] = self.updates.get(camera, 0) + 1
            self.pending.append(self.probe.clock())

    def painted(self, app: Any, screen: Any, at: float) -> None:
        self.to_paint_ms += [(at - t) * 1e3 for t in self.pending]
        self.pending.clear()


@contextlib.contextmanager
def _counting_tiles(counters: _LiveCounters) -> Iterator[None]:
    from console.widgets.camera_tile import CameraTile

    original = CameraTile.__dict__["show_frame"]

    def show_frame(tile: CameraTile, image: Any, capture_us: int) -> None:
        original(tile, image, capture_us)
        counters.shown(tile.camera)

    CameraTile.show_frame = show_frame  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        CameraTile.show_frame = original  # type: ignore[method-assign]


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(TICK_S)
        lags.append(max(0.0, time.perf_counter() - t - TICK_S) * 1e3)


async def measure_live(make_app: Callable[[], App], cameras: Sequence[str], *, duration: float = 20.0,
                       size: tuple[int, int] = SIZE, require_live: bool = True, limit_s: float = 60.0,
                       during: Callable[[App], Coroutine[Any, Any, None]] | None = None) -> Live:
    """Fleet paint, ``l``, (every tile live,) then ``duration`` s of frames; ``during`` runs in the window."""
    from console.screens.live import LiveScreen
    from console.widgets.camera_tile import CameraTile

    probe = FrameProbe()
    paint = FirstPaint(cameras)
    counters = _LiveCounters(probe)
    probe.listeners += [paint, counters.painted]
    pauses = GcPauses()
    gc.collect()  # the garbage of earlier apps in this process is not the window's to collect
    with probe.installed(), _counting_tiles(counters), pauses.installed():
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await asyncio.wait_for(paint.done.wait(), limit_s)
            await pilot.press("l")
            pressed = time.perf_counter()
            all_live_s = None
            if require_live:
                deadline = pressed + limit_s
                while True:
                    tiles = list(app.screen.query(CameraTile)) if isinstance(app.screen, LiveScreen) else []
                    if len(tiles) >= len(cameras) and all(t.state == "live" for t in tiles):
                        break
                    if time.perf_counter() > deadline:
                        states = {t.camera: f"{t.state}: {t.status_text}" for t in tiles}
                        raise RuntimeError(f"the tiles did not all go live within {limit_s:g} s: {states}")
                    await asyncio.sleep(0.02)
                all_live_s = time.perf_counter() - pressed
            probe.reset()
            pauses.pauses.clear()
            counters.counting = True
            lags: list[float] = []
            stop = asyncio.Event()
            ticker = asyncio.create_task(_ticker(lags, stop))
            feeder = asyncio.create_task(during(app)) if during is not None else None
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(duration)
            cpu_s, window_s = time.process_time() - cpu0, time.perf_counter() - t0
            counters.counting = False
            frames_ms, sizes, spans = [f * 1e3 for f in probe.frames_s], list(probe.bytes), list(probe.spans)
            gc_ms = [(g, (e - s) * 1e3) for g, s, e in pauses.pauses]
            slow = [(s, e) for s, e in spans if (e - s) * 1e3 >= FRAME_P99_TARGET_MS]
            slow_in_gc = sum(pauses.full_inside(s, e) for s, e in slow)
            tracked = len(gc.get_objects())
            stop.set()
            for task in (ticker, feeder):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            app.exit()
    return Live(frames_ms, sizes, lags, dict(sorted(counters.updates.items())), counters.to_paint_ms,
                window_s, cpu_s, all_live_s, gc_ms, len(slow), slow_in_gc, tracked)


# -- the demo's fleet ------------------------------------------------------------------------------------------


async def wait_fleet_up(store_url: str, token: str | None, cameras: Sequence[str], nodes: int,
                        limit_s: float = 60.0) -> float:
    """Poll the store's ``fleet`` until ``nodes`` nodes are up and every camera has a node; returns seconds waited."""
    from console.fleet_model import FleetSnapshot
    from shared.protocol.fleet import FleetReport
    from shared.query_client import StoreClient, StoreError

    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < limit_s:
        try:
            async with StoreClient(store_url, token=token) as client:
                while time.monotonic() - started < limit_s:
                    snap = FleetSnapshot.from_api(FleetReport.from_json(await client.call("fleet")))
                    up = [n.node for n in snap.nodes if n.state == "up"]
                    missing = [c for c in cameras if c not in snap.cameras or snap.cameras[c].status == "down"
                               or snap.node_url_of(c) is None]
                    if len(up) >= nodes and not missing:
                        return time.monotonic() - started
                    last = f"nodes up {up}, cameras not ready {missing}"
                    await asyncio.sleep(0.5)
        except (StoreError, OSError) as exc:
            last = str(exc)
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the fleet was not up within {limit_s:g} s: {last}")


# -- the report --------------------------------------------------------------------------------------------------


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


def _med_max(seconds: Sequence[float]) -> str:
    return f"{statistics.median(seconds) * 1e3:.0f} / {max(seconds) * 1e3:.0f} ms"


def _p50_p99_max(ms: Sequence[float]) -> str:
    return f"{_ms(pct(ms, 50))} / {_ms(pct(ms, 99))} / {_ms(max(ms, default=math.nan))} ms"


def rows_for(warm: Sequence[Paint], cold: Sequence[Paint], live: Live) -> list[Row]:
    rows: list[Row] = []
    if warm:
        fleet = [p.fleet_s for p in warm]
        rows += [
            Row(f"first paint, header (new app in a running process; median / max of {len(warm)})",
                _med_max([p.header_s for p in warm])),
            Row(f"first fleet paint, all 6 cameras' rows (new app; median / max of {len(warm)})",
                _med_max(fleet), "< 1 s (every start)",
                max(fleet) < FIRST_PAINT_TARGET_S),
        ]
    if cold:
        fleet = [p.fleet_s for p in cold]
        rows += [
            Row(f"first paint, header (new Python process; median / max of {len(cold)})",
                _med_max([p.header_s for p in cold])),
            Row(f"first fleet paint (new Python process incl. interpreter and imports; median / max of {len(cold)})",
                _med_max(fleet), "< 1 s (every start)",
                max(fleet) < FIRST_PAINT_TARGET_S),
        ]
    frames_p99 = pct(live.frames_ms, 99)
    total_updates = sum(live.updates.values())
    per_cam = list(live.updates.values()) or [0]
    rows += [
        Row(f"frame time with 6 live tiles, p50 / p99 / max ({len(live.frames_ms)} frames in {live.window_s:.0f} s)",
            _p50_p99_max(live.frames_ms),
            "p99 < 50 ms", None if math.isnan(frames_p99) else frames_p99 < FRAME_P99_TARGET_MS),
        Row("tile pictures shown in the window (all tiles; per tile min–max)",
            f"{total_updates} ({total_updates / live.window_s:.1f}/s; {min(per_cam)}–{max(per_cam)})"),
        Row("picture handed to its tile → painted, p50 / p99",
            f"{_ms(pct(live.update_to_paint_ms, 50))} / {_ms(pct(live.update_to_paint_ms, 99))} ms"),
        Row(f"event-loop lag ({TICK_S * 1e3:g} ms ticker), p50 / p99 / max",
            _p50_p99_max(live.lag_ms)),
        Row("terminal output per frame (true colour), mean",
            f"{statistics.fmean(live.bytes_per_frame) / 1e3:.1f} kB" if live.bytes_per_frame else "-"),
        Row("console process CPU in the window (UI + decode threads)",
            f"{live.cpu_s / live.window_s * 100:.0f}% of a core"),
    ]
    full = [ms for g, ms in live.gc_ms if g == 2]
    rows += [
        Row("garbage-collector pauses in the window: all / full (gen 2), max full",
            f"{len(live.gc_ms)} / {len(full)}, {_ms(max(full, default=math.nan))} ms "
            f"({live.tracked_objects:,} tracked objects)"),
        Row(f"frames ≥ {FRAME_P99_TARGET_MS:g} ms, and of those with a full collection inside",
            f"{live.slow_frames}, {live.slow_frames_in_gc}"),
    ]
    if live.all_live_s is not None:
        rows.append(Row("`l` pressed → all 6 tiles showing a picture", f"{live.all_live_s:.2f} s"))
    return rows


def print_table(rows: Sequence[Row], console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:
        console.width = 150  # a log file: no need to wrap at 80 columns
    table = Table(title="SHT CCTV console benchmark")
    for col in ("metric", "measured", "target", "result"):
        table.add_column(col)
    for r in rows:
        style = "" if r.ok is None else ("green" if r.ok else "red")
        table.add_row(r.metric, r.value, r.target, verdict(r.ok), style=style)
    console.print(table)


def machine_info(load: tuple[float, float, float]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    model = cpu_model()

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": str(os.cpu_count()), "cpu": model,
            "python": platform.python_version(), "textual": ver("textual"), "textual-image": ver("textual-image"),
            "load average (1/5/15 min) at start": " / ".join(f"{x:.2f}" for x in load)}


def findings(live: Live) -> list[str]:
    """What the frame numbers say, from this run."""
    full = [ms for g, ms in live.gc_ms if g == 2]
    if not live.slow_frames:
        return []
    text = (f"{live.slow_frames} of {len(live.frames_ms)} frames took {FRAME_P99_TARGET_MS:g} ms or more; "
            f"{live.slow_frames_in_gc} of them had a full (generation 2) collection of the garbage collector inside.")
    if full:
        text += (f" The window had {len(full)} full collections of {min(full):.0f}–{max(full):.0f} ms each, with "
                 f"{live.tracked_objects:,} objects tracked; other frames took {_ms(pct(live.frames_ms, 50))} ms "
                 "(p50).")
    return [text]


def markdown_section(rows: Sequence[Row], info: dict[str, str], args: argparse.Namespace,
                     warm: Sequence[Paint], cold: Sequence[Paint], notes: Sequence[str] = ()) -> str:
    lines = [
        "Generated by `just bench console` (`python3 -m bench console`, bench/console.py); rerun it to refresh this "
        "section. The other sections of this page come from the other benchmarks.", "",
        "### What is measured", "",
        "- **System under load**: the six-camera demo's fleet (`sht.demo.DemoProcesses`: a store and 3 nodes × 2 "
        f"simulated cameras, {args.camera_size} at {args.fps} fps, 10 s segments) runs on the same machine "
        "throughout; the console connects to its store with the demo's admin token, as `sht demo` does. The "
        "benchmark waits until the store's `fleet` API says all 3 nodes are up and lists every camera with its node.",
        f"- **First fleet paint**: `ConsoleApp` run headless at {args.size[0]}x{args.size[1]} "
        "(`App.run_test`). A paint is a frame Textual hands to its output (`App._display`, wrapped from outside "
        "the app). The clock starts before the app is constructed (`console.app` already imported) and stops at "
        "the end of the first frame whose fleet table holds a row for every camera; the header time is the first "
        f"frame at all. {args.runs} starts, a new app each time. The same again in a fresh Python process "
        "(`python3 -m bench.console --child-paint`), timed from just before it is spawned: interpreter start, "
        "imports and the app, which is what typing `sht console` costs.",
        f"- **Frame time**: a new app, `l` for the Live screen, a wait until all six tiles show a decoded "
        f"picture, then {args.duration:g} s of the tiles updating (keyframes only, 1 a second per camera at the "
        "demo's 1 s GOP; half-block pictures, `SHT_CONSOLE_IMAGES=halfcell`, as there is no graphics terminal). "
        "A frame is one outermost `Screen._on_timer_update` or `Screen._refresh_layout` call that produced output: "
        "layout when a new picture resizes its widget, the compositor rendering the changed widgets (the "
        "half-block pictures are drawn here), and the encoding of the update into terminal escape sequences. "
        "A headless app skips that last step, so the wrapper does it with a true-colour Rich console inside the "
        "frame's time; writing the bytes is left to Textual's writer thread in a real terminal and is not timed. "
        "This is the main-thread time between a picture arriving and the terminal receiving it, i.e. what the "
        "operator sees as the console's smoothness and keyboard latency while the tiles update.",
        f"- **Cross-check**: an asyncio task that sleeps {TICK_S * 1e3:g} ms in a loop inside the app's event loop; "
        "its lateness is the time the loop was busy (frames, message handlers, GC), the delay any key press "
        "would see. Picture → painted is from `CameraTile.show_frame` to the end of the frame that drew it. "
        "Collections of Python's cyclic garbage collector are timed with `gc.callbacks` (one `gc.collect()` "
        "before the app starts, so earlier apps' garbage is not collected in the window).",
        "- Not included in the cold start: textual-image's queries of the terminal's graphics support at import "
        "(there is no terminal here; pipes skip them).",
        "- Targets (issue 4): first fleet paint under 1 s; frame time p99 under 50 ms while six live tiles update.",
        "",
        "### Machine", "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "- shared with other work, and with the demo's 6 encoders running on the same cores.", "",
        "### Results", "",
        "| metric | measured | target | result |", "|---|---|---|---|",
        *[f"| {r.metric} | {r.value} | {r.target} | {verdict(r.ok)} |" for r in rows], "",
    ]
    if warm:
        lines.append("First fleet paint, each start (new app in a running process): "
                     + ", ".join(f"{p.fleet_s * 1e3:.0f}" for p in warm) + " ms.")
    if cold:
        lines.append("First fleet paint, each start (new Python process): "
                     + ", ".join(f"{p.fleet_s * 1e3:.0f}" for p in cold) + " ms.")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


# -- the command -------------------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    try:
        size = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLUMNSxROWS, got {text!r}") from None
    if min(size) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return size


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench console", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--runs", type=int, default=5, help="starts measured, in-process and cold (default 5)")
    p.add_argument("--cold-runs", type=int, default=None, help="cold starts in a new process (default: --runs)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of live tiles measured (default 20)")
    p.add_argument("--size", type=_size, default=SIZE, help="terminal size, COLUMNSxROWS (default 120x40)")
    p.add_argument("--camera-size", default="1280x720", help="the simulated cameras' resolution (default 1280x720)")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--base-port", type=int, default=None, help="default: a free range")
    # internal: one cold start, run by the benchmark in a new process
    p.add_argument("--child-paint", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--cameras", default=",".join(DEMO_CAMERAS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cold_runs is None:
        args.cold_runs = args.runs
    if args.runs < 1 or args.cold_runs < 0 or args.duration <= 0:
        p.error("--runs must be at least 1, --cold-runs at least 0 and --duration positive")
    if args.child_paint and not args.store:
        p.error("--child-paint needs --store")
    return args


async def _measure(args: argparse.Namespace, fleet: Any, out: Console) -> tuple[list[Paint], list[Paint], Live]:
    from console.app import ConsoleApp

    token = fleet.tokens["admin"]
    await fleet.wait_ready()
    waited = await wait_fleet_up(fleet.store_url, token, DEMO_CAMERAS, nodes=3)
    out.print(f"fleet up: 3 nodes, 6 cameras ({waited:.1f} s after the processes answered)")

    def make() -> ConsoleApp:
        return ConsoleApp(fleet.store_url, token=token)

    warm = []
    for i in range(args.runs):
        warm.append(await measure_first_paint(make, DEMO_CAMERAS, size=args.size))
        out.print(f"start {i + 1}/{args.runs}: header {warm[-1].header_s * 1e3:.0f} ms, "
                  f"fleet {warm[-1].fleet_s * 1e3:.0f} ms")
    cold = []
    for i in range(args.cold_runs):
        cold.append(await asyncio.to_thread(measure_cold_paint, fleet.store_url, token, DEMO_CAMERAS, args.size))
        out.print(f"cold start {i + 1}/{args.cold_runs}: header {cold[-1].header_s * 1e3:.0f} ms, "
                  f"fleet {cold[-1].fleet_s * 1e3:.0f} ms")
    out.print(f"Live screen: waiting for six pictures, then {args.duration:g} s of frames…")
    live = await measure_live(make, DEMO_CAMERAS, duration=args.duration, size=args.size)
    return warm, cold, live


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_paint:
        return _child_paint(args)
    from console.widgets.picture import RENDERER_ENV
    from sht.demo import DemoOptions, DemoProcesses

    os.environ[RENDERER_ENV] = "halfcell"  # no graphics terminal here; the tiles' pictures as half blocks
    out = Console(stderr=True)
    info = machine_info(os.getloadavg())
    if args.base_port is None:
        from bench.run import free_base_port

        args.base_port = free_base_port()
    with tempfile.TemporaryDirectory(prefix="sht-bench-console-") as tmp:
        opts = DemoOptions(base_port=args.base_port, root=Path(tmp) / "demo", headless=True,
                           size=args.camera_size, fps=args.fps)
        fleet = DemoProcesses(opts)
        out.print(f"starting the demo's fleet: store :{opts.store_port}, nodes :{opts.base_port}-"
                  f"{opts.base_port + 2}, 6 cameras {args.camera_size} at {args.fps} fps…")
        try:
            fleet.start()
            warm, cold, live = asyncio.run(_measure(args, fleet, out))
        except RuntimeError as exc:
            out.print(f"[red]bench console: {exc}[/red]")
            for name in ("store", "node0", "node1", "node2"):
                log = fleet.logs / f"{name}.log"
                if log.exists():
                    out.print(f"--- {name}.log (end)\n" + log.read_text(errors="replace")[-1500:], markup=False)
            return 1
        finally:
            out.print("stopping the fleet…")
            fleet.stop()
    rows = rows_for(warm, cold, live)
    print_table(rows)
    for note in findings(live):
        out.print(note)
    if not args.no_write:
        replace_section(args.output, SECTION, markdown_section(rows, info, args, warm, cold, findings(live)))
        out.print(f"wrote the {SECTION!r} section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
