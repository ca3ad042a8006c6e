"""Real processes on loopback ports: the store and nodes as users run them."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from sht.demo import _die_with_parent


def port_is_free(port: int) -> bool:
    """Nothing listens on the port (connections in TIME_WAIT do not count, as for a server)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections and port-0 binds (Linux: 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_base_port() -> int:
    """A port P with P, P+1, P+2 and P+100 all free (the demo's layout), below the kernel's ephemeral range: between
    this check and the demo's bind, another test's connection (two xdist workers) could otherwise take one of them
    (CI: a cluster demo node's port taken, 'address already in use')."""
    top = max(11000, ephemeral_low() - 200)
    for _ in range(200):
        p = random.randint(10000, top)
        if all(port_is_free(p + d) for d in (0, 1, 2, 100)):
            return p
    raise RuntimeError("no free port range")


_TOKENS: dict[Path, dict[str, str]] = {}


def tokens(root: Path) -> dict[str, str]:
    """A node, a viewer and an admin token signed by the store at ``root`` (its key is made if need be)."""
    if root not in _TOKENS:
        from store.admin.keys import KeyStore

        keys = KeyStore(root)
        _TOKENS[root] = {role: keys.issue(role, subject, 3600)[0]
                         for role, subject in (("node", "node0"), ("viewer", "viewer"), ("admin", "tester"))}
    return _TOKENS[root]


def get_json(url: str, timeout: float = 2.0):
    with urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        try:
            return get_json(url + "/health", 1.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, token: str | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        env = {**os.environ, "SHT_TOKEN": token} if token else None
        # Like the demo's children: they die with the test run, even one killed mid-test.
        proc = subprocess.Popen([sys.executable, "-m", "sht", *args], stdout=log, env=env,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """Newest first, so nodes stop (and upload) before the store they talk to goes away."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture
def processes(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    yield procs
    procs.stop_all()


@pytest.fixture
def store(processes, tmp_path):
    """A real store on a free loopback port; yields (http url, root)."""
    port = free_port()
    root = tmp_path / "store"
    proc = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1",
                           "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    return url, root
