"""bench/container.py's section from made-up figures (no podman): the target judged by the size, the shares
computed from the parts, the medians; and the wheel list of tools/image_wheels.py it builds from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.container import section

MB = 1_000_000
PARTS = [("PIL", 8 * MB), ("av", 33 * MB), ("av.libs", 75 * MB), ("numpy", 29 * MB), ("numpy.libs", 29 * MB),
         ("onnxruntime", 82 * MB), ("/opt/sht", 356 * MB)]


def test_section_over_the_target():
    text = section({"date": "d"}, 476 * MB, 130 * MB, [44.5, 48.9, 40.0], PARTS, [1.7, 3.3, 1.0], [1.8, 2.2])
    assert "**476 MB**: the base 130 MB + the venv /opt/sht 356 MB" in text and "target ≤ 250 MB: not met" in text
    assert "onnxruntime 82, av.libs 75, av 33" in text and "/opt/sht 356" not in text.split("largest parts")[1]
    assert "(median 44.5 s)" in text and "median 1.70 s, max 3.30 s (3 starts)" in text
    assert "248 MB, with the base 79% of the image" in text  # onnxruntime + av + av.libs + numpy + numpy.libs


def test_section_within_the_target():
    assert "target ≤ 250 MB: met" in section({}, 240 * MB, 130 * MB, [30.0], PARTS, [1.0], [1.0])


def test_image_wheels_requirements():
    sys.path.insert(0, str(Path(__file__).parents[2] / "tools"))
    try:
        from image_wheels import requirements
    finally:
        sys.path.pop(0)
    reqs = requirements(["mqtt"])
    assert any(r.startswith("av") for r in reqs) and any(r.startswith("setuptools") for r in reqs)
    assert any(r.startswith("aiomqtt") for r in reqs) and not any(r.startswith("psycopg") for r in reqs)
    assert any(r.startswith("psycopg") for r in requirements(["cluster"]))
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        requirements(["nope"])
