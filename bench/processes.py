"""Real ``sht`` processes for benchmarks: started with their output in a log file, stopped in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def spawn_sht(log_path: Path, *args: str, token: str | None = None,
              die_with_parent: bool = False) -> subprocess.Popen:
    """``python -m sht ARGS`` with stdout and stderr appended to ``log_path``; ``token`` as ``$SHT_TOKEN``;
    ``die_with_parent``: the child gets SIGKILL if the benchmark dies (Linux), as the demo's children do."""
    preexec = None
    if die_with_parent:
        from sht.demo import _die_with_parent

        preexec = _die_with_parent
    env = {**os.environ, "SHT_TOKEN": token} if token else None
    with open(log_path, "ab") as log:  # the child has its own descriptor once started
        return subprocess.Popen([sys.executable, "-m", "sht", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, preexec_fn=preexec)


def stop_in_order(procs: Iterable[subprocess.Popen | None], timeout_s: float = 20.0) -> None:
    """SIGTERM each process still running, in the order given (nodes before their store, so they upload what
    they hold), waiting for each; one that does not stop in ``timeout_s`` is killed."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
