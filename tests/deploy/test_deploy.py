"""deploy/: the systemd units say what the node and store need; install.sh works as a dry run into a directory."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

from shared.config import load_node_config

DEPLOY = Path(__file__).parents[2] / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in systemd
    parser.read(DEPLOY / name)
    return parser


def test_node_unit():
    u = unit("sht-node.service")
    service = u["Service"]
    assert service["EnvironmentFile"] == "/etc/sht/node.env"  # SHT_TOKEN, never on the command line
    assert service["ExecStart"].startswith("/opt/sht/venv/bin/sht node --config /etc/sht/node.json")
    assert "video" in service["SupplementaryGroups"] and "PrivateDevices" not in service
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > 15  # the shutdown upload
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_store_unit():
    service = unit("sht-store.service")["Service"]
    assert "sht store --root ${SHT_STORE_ROOT}" in service["ExecStart"]
    assert service["ReadWritePaths"] == "/srv/sht" and service["Restart"] == "always"


def test_example_node_config_loads():
    config = load_node_config(DEPLOY / "node.json.example")
    assert [c.source for c in config.cameras][:2] == ["picamera2:0", "picamera2:1"]
    assert config.cameras[1].masks and config.cameras[1].timestamp


def test_install_dry_run(tmp_path):
    for role in ("node", "store"):
        done = subprocess.run(["bash", str(DEPLOY / "install.sh"), role], env={**os.environ, "ROOT": str(tmp_path)},
                              capture_output=True, text=True, timeout=30, check=True)
        assert f"installed sht-{role}" in done.stdout and "systemctl enable" in done.stdout
        assert (tmp_path / "etc/systemd/system" / f"sht-{role}.service").read_text() == \
            (DEPLOY / f"sht-{role}.service").read_text()
    env = tmp_path / "etc/sht/node.env"
    assert oct(env.stat().st_mode & 0o777) == "0o600" and "SHT_TOKEN=" in env.read_text()
