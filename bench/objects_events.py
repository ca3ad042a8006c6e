"""The object benchmark's event level: a real store with detection on and a real node playing OpenCV's clips.

One run per device (``cpu``, and ``cuda`` where onnxruntime offers ``CUDAExecutionProvider``): a fresh
``sht store --detect local --detect-device DEVICE`` and one ``sht node`` with 6 cameras, 3 playing vtest
(pedestrians) and 3 playing tree (nobody), each ``file:REEL?loop=1`` with motion on (the node's default, luma).
A reel is the whole clip cut in pieces with a still between them (bench/footage.py says why); ``--gap 0``
plays the original .avi files instead (one endless event per camera, transcoded by the node).

While it runs (a warm-up, then ``--minutes``):

- a poller asks the store's API (``events``, a viewer token, shared/query_client.StoreClient) every 100 ms
  for the events of the last 30 s and of every event not yet settled, and notes when each event was first
  returned and when first with a ``label`` (bench/objects_summary.py ``observe``);
- once a second: the store's /health ``detect`` object (queue, frames, dropped, inference ms: read
  defensively, printed as it is) and the CPU time of the store process and of its detector child
  process(es) (multiprocessing children of the store, found with psutil; a restarted one is added in).

The window's events are summed up by bench/objects_summary.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.footage import open_clip, reel
from bench.objects_summary import DeviceRun, observe, settled
from bench.processes import spawn_sht, stop_in_order

NODE_ID = "bench-objects"
CAMERAS = {"vtest": ("vtest1", "vtest2", "vtest3"), "tree": ("tree1", "tree2", "tree3")}
POLL_S = 0.1
RECENT_S = 30.0  # every poll asks for events that started this recently, plus the unsettled older ones
SAMPLE_S = 1.0
HEALTH_KEYS = ("detect", "detector")  # where the store's /health may put its detector (the first present wins)


def now_us() -> int:
    return time.time_ns() // 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sht-bench" / "objects"


def reels(clips: dict[str, Path], piece_s: float, gap_s: float, tmp: Path) -> dict[str, Path]:
    """The file each clip's cameras play: a reel (made once, kept in ~/.cache/sht-bench), or with ``gap_s``
    0 the original clip."""
    out: dict[str, Path] = {}
    for name, src in clips.items():
        path = open_clip(src, tmp)
        if gap_s <= 0:
            out[name] = path
            continue
        target = cache_dir() / f"{name}-piece{piece_s:g}-gap{gap_s:g}.mp4"
        if not target.is_file() or target.stat().st_mtime < path.stat().st_mtime:
            target.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            partial = target.with_suffix(".part.mp4")
            made = reel(path, partial, piece_s, gap_s)
            partial.replace(target)
            print(f"made {target} ({made.pieces} pieces, {made.duration_s:.0f} s, {made.bytes / 1e6:.1f} MB) in "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr)
        out[name] = target
    return out


def detect_health(health: dict[str, Any]) -> dict[str, Any]:
    for key in HEALTH_KEYS:
        if isinstance(health.get(key), dict):
            return health[key]
    return {}


def _int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class CpuMeter:
    """CPU seconds (user + system) of the store process and of its detector children, since ``mark``."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.store = psutil.Process(pid)
        self.children: dict[int, float] = {}  # pid -> latest CPU seconds (a child that died keeps its last)
        self.base_store = 0.0
        self.base_children: dict[int, float] = {}

    @staticmethod
    def _cpu(p: Any) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    def sample(self) -> None:
        import psutil

        with contextlib.suppress(psutil.Error):
            for child in self.store.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    cmd = " ".join(child.cmdline())
                    # The detector: a multiprocessing child; not multiprocessing's bookkeeper, nor anything else.
                    if "multiprocessing" in cmd and "resource_tracker" not in cmd:
                        self.children[child.pid] = self._cpu(child)

    def mark(self) -> None:
        self.sample()
        self.base_store = self._cpu(self.store)
        self.base_children = dict(self.children)

    def store_s(self) -> float:
        return self._cpu(self.store) - self.base_store

    def children_s(self) -> float | None:
        if not self.children:
            return None
        return sum(cpu - self.base_children.get(pid, 0.0) for pid, cpu in self.children.items())


@dataclass
class EventSystem:
    """A store with detection on and a node playing the clips, as users run them."""

    tmp: Path
    device: str
    files: dict[str, Path]
    detect: str = "local"  # sht store --detect: off is the harness's smoke test and the store's baseline
    store_port: int = field(default_factory=free_port)
    node_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    @property
    def clip_of(self) -> dict[str, str]:
        return {cam: clip for clip, cams in CAMERAS.items() for cam in cams}

    def start(self) -> subprocess.Popen:
        from store.admin.keys import KeyStore

        root = self.tmp / "store"
        keys = KeyStore(root)
        self.tokens = {role: keys.issue(role, subject, 6 * 3600)[0]
                       for role, subject in (("node", NODE_ID), ("viewer", "bench-objects"))}
        store = self._spawn("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port",
                            str(self.store_port), "--detect", self.detect,
                            *(["--detect-device", self.device] if self.detect != "off" else []))
        self._wait(self.url + "/health", store)
        cams = [a for clip, names in CAMERAS.items() for cam in names
                for a in ("--camera", f"{cam}=file:{self.files[clip]}?loop=1")]
        node = self._spawn("node", "node", "--id", NODE_ID, "--host", "127.0.0.1", "--port", str(self.node_port),
                           "--store", f"ws://127.0.0.1:{self.store_port}", "--spool", str(self.tmp / "spool"),
                           *cams, token=self.tokens["node"])
        self._wait(f"http://127.0.0.1:{self.node_port}/health", node)
        return store

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        stop_in_order(reversed(self.procs))  # the node first

    def _spawn(self, name: str, *args: str, token: str | None = None) -> subprocess.Popen:
        proc = spawn_sht(self.tmp / f"{name}.log", *args, token=token, die_with_parent=True)
        self.procs.append(proc)
        return proc

    def _wait(self, url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                name = "store" if proc is self.procs[0] else "node"
                raise RuntimeError(f"sht {name} exited with {proc.returncode}: {self.log_tail(name, 5)}")
            try:
                get_json(url, 1.0)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


async def poll_events(system: EventSystem, run: DeviceRun, stop: asyncio.Event) -> None:
    """Every ``POLL_S``: the events of the last ``RECENT_S`` and of every unsettled one, into ``run.sightings``."""
    from shared.query_client import StoreClient

    async with StoreClient(system.url, token=system.tokens["viewer"]) as store:
        while not stop.is_set():
            t = now_us()
            unsettled = [s.start_us for s in run.sightings.values() if not settled(s, t)]
            from_us = min([t - int(RECENT_S * 1e6), *unsettled]) - 1
            after = None
            while True:
                page = await store.call("events", cameras=list(run.clip_of), from_us=from_us, to_us=t + 60_000_000,
                                        limit=1000, after=after)
                seen = now_us()
                for item in page.get("items", []):
                    run.labels_seen |= "label" in item
                    observe(run.sightings, item, seen)
                if not (after := page.get("next")):
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, POLL_S - (now_us() - t) / 1e6))


async def sample(system: EventSystem, run: DeviceRun, cpu: CpuMeter, base: dict[str, Any],
                 stop: asyncio.Event) -> None:
    """Once a second: /health's detector queue and counters, and the CPU times."""
    while not stop.is_set():
        with contextlib.suppress(OSError, ValueError):
            health = detect_health(await asyncio.to_thread(get_json, system.url + "/health"))
            run.health = health
            if (q := _int(health, "queue")) is not None:
                run.queue.append(q)
            run.queue_limit = _int(health, "queue_limit")
            for key in ("frames", "dropped", "errors", "restarts"):
                if (v := _int(health, key)) is not None:
                    setattr(run, key, v - (_int(base, key) or 0))
        cpu.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def measure(system: EventSystem, run: DeviceRun, cpu: CpuMeter, warmup_s: float, minutes: float) -> None:
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_events(system, run, stop))
    await asyncio.sleep(warmup_s)
    base = detect_health(await asyncio.to_thread(get_json, system.url + "/health"))
    cpu.mark()
    started, t0 = time.monotonic(), now_us()
    sampler = asyncio.create_task(sample(system, run, cpu, base, stop))
    end = started + minutes * 60
    while time.monotonic() < end:
        if poller.done() or sampler.done():
            break  # a failure: its exception comes out of the gather below
        await asyncio.sleep(min(5.0, max(0.0, end - time.monotonic())))
        print(f"  {run.device}: {time.monotonic() - started:.0f} s, {len(run.sightings)} events seen, "
              f"{sum(s.label is not None for s in run.sightings.values())} labelled", file=sys.stderr)
    stop.set()
    await asyncio.gather(poller, sampler)
    run.elapsed_s = time.monotonic() - started
    run.window = (t0, now_us())
    run.store_cpu_s, run.detector_cpu_s = cpu.store_s(), cpu.children_s()


def run_device(device: str, files: dict[str, Path], tmp: Path, minutes: float, warmup_s: float,
               detect: str = "local") -> DeviceRun:
    """One run with a fresh store and node; a failure is written into the run (``problem``), not raised."""
    system = EventSystem(tmp / device, device, files, detect)
    system.tmp.mkdir(parents=True, exist_ok=True)
    run = DeviceRun(device if detect != "off" else f"{device} (store --detect off)", clip_of=system.clip_of)
    try:
        store = system.start()
        asyncio.run(measure(system, run, CpuMeter(store.pid), warmup_s, minutes))
    except Exception as exc:  # the report says what went wrong, with the store's last words
        run.problem = f"{type(exc).__name__}: {exc}"
        print(f"bench objects ({device}): {run.problem}\n--- store log ---\n{system.log_tail('store')}\n"
              f"--- node log ---\n{system.log_tail('node')}", file=sys.stderr)
    finally:
        system.stop()
    if run.problem is None and not run.labels_seen:
        run.problem = "the store's events carry no label (a store without issue 15's detection)"
    # What the bench reads of the store: events items' "open" and "label" (bench/objects_summary.py observe) and
    # /health "detect" (queue, queue_limit, frames, dropped, errors, restarts, inference_ms_p50/p99, provider).
    print(f"bench objects ({device}): /health detect at the end: {json.dumps(run.health)}", file=sys.stderr)
    return run


def devices_to_run(asked: str) -> list[tuple[str, str | None]]:
    """(device, why it cannot run or None) for ``--devices``: ``auto`` is cpu and cuda; cuda runs where onnxruntime
    offers it, and elsewhere its column says why not (the issue asks for CUDA beside CPU wherever there is one)."""
    import onnxruntime

    offered = onnxruntime.get_available_providers()
    names = ["cpu", "cuda"] if asked == "auto" else [d.strip() for d in asked.split(",")]
    out: list[tuple[str, str | None]] = []
    for name in names:
        provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(name)
        why = None if provider in offered else (f"onnxruntime {onnxruntime.__version__} here offers "
                                                 f"{', '.join(offered)}; {name} needs onnxruntime-gpu and a GPU")
        out.append((name, why))
    return out

