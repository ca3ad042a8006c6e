"""``sht demo``: a store and three nodes with two simulated cameras each, on this machine (``--cluster``: two
stores on a PostgreSQL index and a SeaweedFS bucket, sht/demo_cluster.py). Each camera shows a place of its own
(``DEMO_SCENES``, from the node's shipped scenarios).

Every child is started with a parent-death signal and stopped in order on the
way out (nodes first, so they finish and upload their last segments, then the
store), whatever ends the demo: the duration, Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.httpjson import fetch_json
from sht.latency import LatencyProbe
from store.index import index_path

NODES = 3
CAMERAS_PER_NODE = 2
# Each camera of the demo its own place (node/scenarios/), rendered from its own seed and started at its own
# moment, so the six pictures differ and do not move in step. Deterministic: camera i is the same every run.
DEMO_SCENES = ("street", "car_park", "shop_entrance", "corridor", "loading_bay", "garden_night")
DEMO_PHASE_STEP_S = 7.0
READY_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = 40.0


@dataclass
class DemoOptions:
    base_port: int = 8000
    root: Path = Path("./sht-demo")
    headless: bool = False
    duration: float | None = None
    segment_seconds: float = 10.0
    size: str = "1280x720"
    fps: int = 15
    summary_json: Path | None = None
    motion: str | None = None  # luma | vectors | off for every camera; None: the node's default
    cluster: bool = False  # two stores on a PostgreSQL index and a SeaweedFS bucket (sht/demo_cluster.py)

    @property
    def store_port(self) -> int:
        return self.base_port + 100

    def node_port(self, i: int) -> int:
        return self.base_port + i


def demo_camera_sources() -> dict[str, str]:
    """Camera id -> SOURCE for every camera of the demo (``--cluster`` too): camera i shows scene i, seed i + 1,
    phase 7 i seconds."""
    return {f"cam{i}": f"synthetic:{scene}?seed={i + 1}&phase={DEMO_PHASE_STEP_S * i:g}"
            for i, scene in enumerate(DEMO_SCENES[: NODES * CAMERAS_PER_NODE])}


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the demo itself dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class DemoProcesses:
    """The demo's child processes."""

    def __init__(self, opts: DemoOptions) -> None:
        self.opts = opts
        self.store: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []
        self.logs = opts.root / "logs"
        self.tokens: dict[str, str] = {}
        self.node_tokens: list[str] = []

    def _spawn(self, name: str, args: list[str], token: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        # Tokens go by environment, never on a command line that `ps` shows.
        extra = {**(env or {}), **({"SHT_TOKEN": token} if token else {})}
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "sht", *args], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **extra} if extra else None,
                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            log.close()

    def make_tokens(self) -> None:
        """The demo is its own administrator: it signs what every part needs with the store's key."""
        from store.admin.keys import KeyStore

        keys = KeyStore(self.opts.root / "store")
        week = 7 * 24 * 3600
        self.tokens = {role: keys.issue(role, f"demo-{role}", week)[0] for role in ("viewer", "admin")}
        self.node_tokens = [keys.issue("node", f"node{i}", week)[0] for i in range(NODES)]

    def starting_line(self) -> str:
        o = self.opts
        return (f"starting store on :{o.store_port} and nodes on :{o.base_port}-{o.base_port + NODES - 1} "
                f"(logs in {self.logs})")

    def start(self) -> None:
        o = self.opts
        self.make_tokens()
        self.store = self._spawn("store", ["store", "--root", str(o.root / "store"), "--host",
                                           "127.0.0.1", "--port", str(o.store_port)])
        self.start_nodes(f"ws://127.0.0.1:{o.store_port}", o.root / "spool")

    def start_nodes(self, store: str, spools: Path) -> None:
        """The three nodes, uploading to ``store`` (one URL, or several separated by commas)."""
        o = self.opts
        sources = demo_camera_sources()
        for i in range(NODES):
            cams = []
            for c in range(CAMERAS_PER_NODE):
                cam = f"cam{i * CAMERAS_PER_NODE + c}"
                cams += ["--camera", f"{cam}={sources[cam]}"]
            self.nodes.append(self._spawn(f"node{i}", [
                "node", "--id", f"node{i}", "--host", "127.0.0.1", "--port", str(o.node_port(i)),
                "--store", store, "--spool", str(spools / f"node{i}"),
                "--segment-seconds", str(o.segment_seconds), "--size", o.size, "--fps", str(o.fps),
                *cams, *(["--motion", o.motion] if o.motion else []),
            ], token=self.node_tokens[i]))

    def node_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.opts.node_port(i)}" for i in range(NODES)]

    @property
    def store_url(self) -> str:
        """What the console is given: the store, or the stores separated by commas."""
        return ",".join(self.store_urls())

    def store_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.opts.store_port}"]

    def children(self) -> list[tuple[str, subprocess.Popen | None]]:
        return [("store", self.store), *((f"node{i}", p) for i, p in enumerate(self.nodes))]

    def camera_ports(self) -> dict[str, int]:
        return {f"cam{i * CAMERAS_PER_NODE + c}": self.opts.node_port(i)
                for i in range(NODES) for c in range(CAMERAS_PER_NODE)}

    def dead_child(self) -> str | None:
        for name, proc in self.children():
            if proc is not None and proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}; see {self.logs / (name + '.log')}"
        return None

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for url in [*self.store_urls(), *self.node_urls()]:
            while True:
                if (dead := self.dead_child()) is not None:
                    raise RuntimeError(dead)
                try:
                    await asyncio.to_thread(fetch_json, url + "/health", 1.0)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT_S:.0f} s") from None
                    await asyncio.sleep(0.2)

    def stop_nodes(self) -> None:
        """The nodes finish and upload their last segment."""
        _terminate(self.nodes, NODE_STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Nodes first (they finish and upload their last segment), then the store."""
        self.stop_nodes()
        if self.store is not None:
            _terminate([self.store], 10.0)

    def close(self) -> None:
        """After ``stop`` and the summary: whatever else the demo started (the cluster's servers)."""

    def ready_lines(self) -> list[str]:
        """What to tell the user once everything answers, before the token line."""
        return []

    def stored_per_camera(self) -> dict[str, tuple[int, int, int]]:
        """(segments, frames, bytes) per camera in the index; the store is stopped by now: its SQLite index is a
        plain file to read."""
        import sqlite3

        db = index_path(self.opts.root / "store")
        stored: dict[str, tuple[int, int, int]] = {}
        if db.exists():
            with sqlite3.connect(db) as conn:
                for cam, n, frames, size in conn.execute(
                    "SELECT camera, COUNT(*), SUM(frames), SUM(size_bytes) FROM segments GROUP BY camera"
                ):
                    stored[cam] = (n, frames, size)
        return stored

    def stores_summary(self, health: list[dict | None]) -> dict | None:
        """What the summary says per store (from their last /health), or None: the single store says nothing."""
        return None


def _terminate(procs: list[subprocess.Popen], timeout: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _fetch_all(urls: list[str]) -> list[dict | None]:
    async def one(url: str) -> dict | None:
        try:
            return await asyncio.to_thread(fetch_json, url + "/health", 2.0)
        except (OSError, ValueError):
            return None

    return list(await asyncio.gather(*(one(u) for u in urls)))


def _can_show_console() -> bool:
    """A terminal to draw on (or ``textual serve``'s browser)."""
    return (sys.stdin.isatty() and sys.stdout.isatty()) or bool(os.environ.get("TEXTUAL_DRIVER"))


async def _run_console(fleet: DemoProcesses, stop: asyncio.Event, deadline: float | None) -> None:
    """The console, in this process, until `q`, the duration, Ctrl-C or SIGTERM; the caller then stops the fleet."""
    from console.app import ConsoleApp

    app = ConsoleApp(fleet.store_url, token=fleet.tokens["admin"])  # the demo's operator may change settings
    loop = asyncio.get_running_loop()

    async def exit_when_told() -> None:
        while not stop.is_set() and (deadline is None or loop.time() < deadline):
            await _wait(stop, 0.5)
        app.exit()

    watcher = asyncio.create_task(exit_when_told())
    try:
        await app.run_async()
    finally:
        watcher.cancel()


async def _run(opts: DemoOptions, fleet: DemoProcesses) -> int:
    from rich.console import Console

    console = Console(stderr=opts.headless)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    console.print(fleet.starting_line())
    fleet.start()
    await fleet.wait_ready()
    for line in fleet.ready_lines():
        console.print(line, soft_wrap=True)
    console.print(f"viewer token for other clients (valid 7 days): SHT_TOKEN={fleet.tokens['viewer']}",
                  soft_wrap=True)
    console.print(f"in a browser (live, and recorded footage under Review): "
                  f"{fleet.store_urls()[0]}/?token={fleet.tokens['viewer']}", soft_wrap=True)
    probe = LatencyProbe(fleet.camera_ports(), token=fleet.tokens["viewer"])
    probe.start()
    deadline = loop.time() + opts.duration if opts.duration else None
    last_nodes: list[dict | None] = []
    try:
        if not opts.headless and _can_show_console():
            await _run_console(fleet, stop, deadline)
        else:
            if not opts.headless:
                console.print("no terminal to draw the console on: running without it; Ctrl-C stops the demo")
            while not stop.is_set() and (deadline is None or loop.time() < deadline):
                if (dead := fleet.dead_child()) is not None:
                    raise RuntimeError(dead)
                last_nodes = await _fetch_all(fleet.node_urls())
                await _wait(stop, 1.0)
    finally:
        await probe.stop()
    console.print("stopping: nodes finish and upload their last segments…")
    last_nodes = await _fetch_all(fleet.node_urls()) or last_nodes
    await asyncio.to_thread(fleet.stop_nodes)
    last_stores = await _fetch_all(fleet.store_urls())
    await asyncio.to_thread(fleet.stop)
    summary = await asyncio.to_thread(_summarise, fleet, last_nodes, probe.summary())
    if (stores := fleet.stores_summary(last_stores)) is not None:
        summary["stores"] = stores
    _print_summary(console, summary)
    if opts.summary_json:
        opts.summary_json.write_text(json.dumps(summary, indent=1))
    return 0 if summary["all_cameras_recorded"] else 1


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


def _summarise(fleet: DemoProcesses, nodes: list[dict | None], latency: dict) -> dict:
    stored = fleet.stored_per_camera()
    dropped: dict[str, int] = {}
    for node in nodes:
        for cam, h in (node or {}).get("cameras", {}).items():
            dropped[cam] = h.get("frames_dropped", 0)
    cameras = {}
    for cam in sorted(fleet.camera_ports()):
        n, frames, size = stored.get(cam, (0, 0, 0))
        cameras[cam] = {"segments": n, "frames": frames, "bytes": size,
                        "frames_dropped": dropped.get(cam), **latency.get(cam, {})}
    return {"cameras": cameras, "all_cameras_recorded": all(c["segments"] > 0 for c in cameras.values())}


def _print_summary(console, summary: dict) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title="demo summary")
    for col in ("camera", "segments", "frames", "MB", "dropped", "latency p50 ms", "p99 ms", "live frames"):
        table.add_column(col, justify="right")
    for cam, c in summary["cameras"].items():
        table.add_row(cam, str(c["segments"]), str(c["frames"]), f"{c['bytes'] / 1e6:.1f}",
                      str(c["frames_dropped"]), _ms(c.get("p50_ms")), _ms(c.get("p99_ms")),
                      str(c.get("live_frames", 0)))
    console.print(table)
    if "stores" in summary:
        stores = Table(title="stores")
        for col in ("store", "segments taken", "maintenance lease"):
            stores.add_column(col, justify="right")
        for url, s in summary["stores"].items():
            stores.add_row(url, "-" if s["segments_taken"] is None else str(s["segments_taken"]),
                           "holds it" if s["maintenance"] else "-")
        console.print(stores)
    if not summary["all_cameras_recorded"]:
        console.print("[red]some cameras recorded nothing[/red]")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def run_demo(opts: DemoOptions) -> int:
    fleet: DemoProcesses
    if opts.cluster:
        from sht.demo_cluster import ClusterDemoProcesses, cluster_missing

        if (missing := cluster_missing()) is not None:
            print(f"sht demo --cluster: {missing}", file=sys.stderr)
            return 2
        fleet = ClusterDemoProcesses(opts)
    else:
        fleet = DemoProcesses(opts)
    try:
        return asyncio.run(_run(opts, fleet))
    except RuntimeError as exc:
        print(f"sht demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            fleet.stop()
        finally:
            fleet.close()
