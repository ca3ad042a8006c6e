"""``sht node --probe``: the machine's cameras, working encoders and health sources (fakes for the Pi parts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from node.capture.probe import v4l2_devices

ROOT = Path(__file__).parents[2]
FAKES = ROOT / "tests" / "fakes"


def test_probe_json_on_a_fake_pi():
    env = {**os.environ, "PATH": f"{FAKES / 'bin'}:{os.environ['PATH']}", "FAKE_VCGENCMD": "pi5",
           "PYTHONPATH": f"{FAKES}:{ROOT}"}
    out = subprocess.run([sys.executable, "-m", "sht", "node", "--probe", "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    result = json.loads(out)
    assert [c["source"] for c in result["cameras"]["picamera2"]["cameras"]] == ["picamera2:0", "picamera2:1"]
    assert result["encoders"]["chosen"] == {"h264": "libx264", "h265": "libx265"}  # no hardware on this machine
    hw = [p for p in result["encoders"]["h264"] if p["name"] != "libx264"]
    assert len(hw) == 4 and not any(p["ok"] for p in hw) and all(p["detail"] for p in hw)
    health = result["health"]
    assert health["sources"]["vcgencmd"] and health["clocks_hz"]["h264"] == 0 and health["temperature_c"] == 58.7


def test_probe_table_without_any_pi_parts():
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "sht", "node", "--probe"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "libx264 (chosen)" in out and "Encoders" in out and "Health sources" in out


def test_v4l2_devices_tell_cameras_from_codecs(tmp_path):
    for n, name in ((0, "USB Camera: HD Webcam"), (10, "bcm2835-codec-decode"), (11, "bcm2835-codec-encode"),
                    (13, "bcm2835-isp")):
        (tmp_path / f"video{n}").mkdir()
        (tmp_path / f"video{n}" / "name").write_text(name + "\n")
    devices = v4l2_devices(tmp_path)
    assert [(d["source"], d["kind"]) for d in devices] == [
        ("v4l2:/dev/video0", "capture"), ("v4l2:/dev/video10", "not a camera"),
        ("v4l2:/dev/video11", "not a camera"), ("v4l2:/dev/video13", "not a camera")]
