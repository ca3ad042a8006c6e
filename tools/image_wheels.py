"""Wheels for an offline image build: every dependency of the project (and the extras asked for), plus the build
backend, for the image's Python (3.11) and this machine's architecture, into a directory (deploy/wheelhouse/).

    python3 tools/image_wheels.py deploy/wheelhouse                 # what `just image-wheels` runs
    python3 tools/image_wheels.py --extras cluster,mqtt DIR

deploy/Containerfile installs from these wheels only (``pip --no-index --find-links``) when the directory holds
any, so the build needs no registry. Run it on a machine of the image's architecture with Python 3.11 (the wheels
are for this interpreter: pip is told the target's version and ABI, so it refuses what would not fit).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PYTHON = "3.11"


def requirements(extras: list[str], pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's dependencies, those of ``extras`` and its build backend, as pip requirement strings."""
    data = tomllib.loads(pyproject.read_text())
    reqs = list(data["project"]["dependencies"]) + list(data["build-system"]["requires"])
    optional = data["project"].get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"image_wheels: no extra {extra!r} in pyproject.toml (there are: {', '.join(optional)})")
        reqs += optional[extra]
    return reqs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest", type=Path, help="directory for the wheels (deploy/wheelhouse)")
    p.add_argument("--extras", default="mqtt", help="comma-separated extras, as the image's SHT_EXTRAS (default mqtt)")
    args = p.parse_args(argv)
    if sys.version_info[:2] != (3, 11):
        print(f"image_wheels: this is Python {sys.version_info[0]}.{sys.version_info[1]}; the image runs "
              f"{IMAGE_PYTHON}, so pip fetches wheels for it (binary only)", file=sys.stderr)
    reqs = requirements([e for e in args.extras.split(",") if e])
    args.dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(args.dest),
           "--python-version", IMAGE_PYTHON, "--implementation", "cp", *reqs]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
