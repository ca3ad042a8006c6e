"""A real store and node for the console's Pilot tests, and helpers to wait on a running app."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system.conftest import Processes, free_port, get_json, wait_for_health

# Pictures as coloured half blocks whatever runs the tests, so nothing depends on the terminal.
os.environ.setdefault("SHT_CONSOLE_IMAGES", "halfcell")

RECORD_SECONDS = 8.0
SEGMENTS_WANTED = 3  # per camera, before the tests start


def _open_flags() -> list[str]:
    """``--no-auth`` where the store and node have authentication: these tests are about the console."""
    from sht.cli import build_parser

    store_parser = next(a for a in build_parser()._subparsers._group_actions  # type: ignore[union-attr]
                        if a.dest == "command").choices["store"]
    return ["--no-auth"] if any("--no-auth" in a.option_strings for a in store_parser._actions) else []


OPEN = _open_flags()


@dataclass
class RecordedSystem:
    """``sht store`` and one ``sht node`` (two 160x120 cameras at 5 fps, 2 s segments) on loopback."""

    processes: Processes
    root: Path
    store_port: int
    node_url: str
    store: subprocess.Popen

    @property
    def store_url(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    def start_store(self) -> None:
        # The console's own tests run without tokens (--no-auth); auth is tested in tests/system/test_security.py.
        self.store = self.processes.start("store", "store", "--root", str(self.root), "--host", "127.0.0.1",
                                          "--port", str(self.store_port), "--no-auth")
        wait_for_health(self.store_url, self.store)

    def kill_store(self) -> None:
        self.store.send_signal(signal.SIGKILL)
        self.store.wait(10)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedSystem]:
    base = tmp_path_factory.mktemp("console-system")
    (base / "logs").mkdir()
    processes = Processes(base / "logs")
    node_port = free_port()
    system = RecordedSystem(processes, base / "store", free_port(), f"http://127.0.0.1:{node_port}",
                            store=None)  # type: ignore[arg-type]
    try:
        system.start_store()
        node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                               "--store", f"ws://127.0.0.1:{system.store_port}", "--spool", str(base / "spool"),
                               "--segment-seconds", "2", "--size", "160x120", "--fps", "5",
                               "--camera", "cam0=synthetic", "--camera", "cam1=synthetic", "--no-auth")
        wait_for_health(system.node_url, node)
        deadline = time.monotonic() + RECORD_SECONDS + 15
        started = time.monotonic()
        while True:
            cams = get_json(system.store_url + "/health")["cameras"]
            enough = all(cams.get(c, {}).get("segments", 0) >= SEGMENTS_WANTED for c in ("cam0", "cam1"))
            if enough and time.monotonic() - started >= RECORD_SECONDS:
                break
            assert time.monotonic() < deadline, f"too little recorded: {cams}\n{processes.log('node')}"
            time.sleep(0.25)
        yield system
    finally:
        processes.stop_all()


async def wait_until(condition: Callable[[], object], seconds: float = 10.0, what: str = "") -> None:
    """Let the app run until ``condition()`` is true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what or condition}")
        await asyncio.sleep(0.05)
