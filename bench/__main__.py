"""``python3 -m bench [NAME] [ARGS...]`` (``just bench ...``): pick a benchmark by name.

``just bench`` runs the system benchmark (bench.run); ``just bench motion`` runs
bench/motion.py, and any other ``bench/NAME.py`` with a ``main(argv)`` works the
same way (a ``-`` in NAME stands for ``_``: ``just bench cluster-failover``).
bench.run rewrites docs/benchmarks.md whole; the sections other benchmarks own
there ("## Motion detection", ...) are carried across that rewrite.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

SYSTEM_SECTIONS = ("## What is measured", "## Machine", "## Results")  # what bench.run writes


def other_sections(text: str) -> list[str]:
    """The level-2 sections of a benchmarks page that bench.run does not write."""
    parts = text.split("\n## ")
    return ["## " + p.rstrip("\n") + "\n" for p in parts[1:]
            if not any(("## " + p).startswith(s) for s in SYSTEM_SECTIONS)]


def run_system(argv: list[str]) -> int:
    from bench.run import main

    output = Path(argv[argv.index("--output") + 1] if "--output" in argv[:-1] else "docs/benchmarks.md")
    kept = other_sections(output.read_text()) if output.exists() else []
    code = main(argv)
    if kept and output.exists():
        text = output.read_text()
        missing = [s for s in kept if s.split("\n", 1)[0] + "\n" not in text]
        if missing:
            output.write_text(text.rstrip("\n") + "\n\n" + "\n".join(missing))
    return code


def main(argv: list[str]) -> int:
    name = argv[0].replace("-", "_") if argv else ""  # `just bench cluster-failover` is bench/cluster_failover.py
    if name and not name.startswith("_") and importlib.util.find_spec(f"bench.{name}") is not None:
        module = importlib.import_module(f"bench.{name}")
        return int(module.main(argv[1:]) or 0)
    return run_system(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
