"""``sht store`` with a model it cannot use stops at start with one line naming the file, before it serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def store(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sht", "store", "--root", str(tmp_path / "root"), "--host",
                           "127.0.0.1", "--port", "0", *flags], capture_output=True, text=True, timeout=120)


def test_a_missing_or_corrupt_model_stops_the_store_with_one_line(tmp_path: Path) -> None:
    missing = store(tmp_path, "--detect-model", str(tmp_path / "nope.onnx"))
    assert missing.returncode == 2
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("sht: error: store: object detection cannot start: ") and "nope.onnx" in last, last
    assert "--detect off" in last

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a model" * 100)
    bad = store(tmp_path, "--detect-model", str(corrupt))
    assert bad.returncode == 2
    assert "corrupt.onnx" in bad.stderr.strip().splitlines()[-1], bad.stderr


def test_detect_flags_are_checked(tmp_path: Path) -> None:
    done = store(tmp_path, "--detect-fps", "0")
    assert done.returncode == 2 and "--detect-fps must be between 0.2 and 30, got 0.0" in done.stderr
    done = store(tmp_path, "--detect", "gpu")
    assert done.returncode == 2 and "invalid choice: 'gpu'" in done.stderr


def test_a_port_in_use_ends_the_store_with_one_line_not_a_hang(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "sht", "store", "--root", str(tmp_path / "root"), "--host",
                               "127.0.0.1", "--port", str(port), "--detect", "off"], capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 2 and "address already in use" in done.stderr.strip().splitlines()[-1], done.stderr
