"""Writing one benchmark's section of docs/benchmarks.md without touching the others."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    """One line of a benchmark table: what, how much, the target and whether it was met."""

    metric: str
    value: str
    target: str = ""
    ok: bool | None = None


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "FAIL")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def replace_section(path: Path, heading: str, body: str) -> None:
    """Replace the level-2 section ``heading`` (up to the next ``## ``) with ``body``, or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{heading}\n\n{body.strip()}\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + block + (text[end:] if end >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n")


def source_commit() -> str:
    """The commit the benchmark's code is from (``git describe``, ``-dirty`` with uncommitted changes), or
    ``$SHT_BENCH_COMMIT`` for a copy without ``.git`` (``git archive``), or "unknown"."""
    import os
    import subprocess

    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=10)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("SHT_BENCH_COMMIT", "unknown")
