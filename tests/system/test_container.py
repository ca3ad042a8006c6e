"""deploy/Containerfile built and run with podman: a store, a node and a relay from the image, the node's segments
in the store's volume found by ``sht search`` from the host, all stopped with the image's STOPSIGNAL, nothing lost.

The base image is a stand-in made with mmdebstrap and the dependencies come from wheels made on the host
(tests/system/podman.py says why); both are cached between runs. Needs ``apt-get install podman buildah mmdebstrap
runc`` (.ci/run installs them); without them the tests skip saying so. ~60 s with a warm cache, ~100 s cold.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import pytest

from shared.protocol.ingest import sha256_hex
from tests.system.conftest import free_port
from tests.system.podman import INSTALL, Podman, base_rootfs, build_context, missing_tools, wheelhouse

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]
FPS = 10


@dataclass
class Image:
    podman: Podman
    tag: str
    build_s: float


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {' '.join(missing)}: {INSTALL} (.ci/run installs them)")
    work = tmp_path_factory.mktemp("podman")
    podman = Podman(work / "podman")
    try:
        podman.import_base(base_rootfs())
        tag = f"localhost/sht-cctv:test-{secrets.token_hex(4)}"
        build_s = podman.build(build_context(work / "context", wheelhouse()), tag)
        yield Image(podman, tag, build_s)
    finally:
        podman.close()
    assert not (work / "podman").exists()


def test_image_is_labelled_unprivileged_and_stops_cleanly(image: Image):
    config = json.loads(image.podman("image", "inspect", image.tag).stdout)[0]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.licenses"] == "MIT" and labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    cfg = config["Config"]
    assert cfg["User"] == "10001:10001" and cfg["StopSignal"] == "SIGINT"
    assert cfg["Entrypoint"] == ["sht"] and cfg["Cmd"] == ["store", "--root", "/data"]
    assert set(cfg["Volumes"]) == {"/data", "/spool"}
    assert "PATH=/opt/sht/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" in cfg["Env"]  # venv 1st
    assert config["Healthcheck"]["Test"][-2:] == ["-m", "sht.container_health"]
    size = image.podman.image_size(image.tag)
    print(f"\nimage {size / 1e6:.0f} MB, built in {image.build_s:.1f} s from a warm base")
    assert size < 600e6  # ~468 MB (docs/deploy.md says what it is made of); far more is a mistake
    inside = image.podman("run", "--rm", "--entrypoint", "sh", image.tag, "-c",
                          "test ! -e /wheelhouse && test ! -e /src && test ! -e /opt/pip-args && echo clean; "
                          "id -u; ls -A /data /spool", timeout=60)
    assert inside.stdout.split() == ["clean", "10001", "/data:", "/spool:"], inside  # nothing of the build left


def wait_health(podman: Podman, name: str, url: str, timeout: float = 60) -> float:
    t0 = time.monotonic()
    while True:
        try:
            with urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout or \
                podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            raise AssertionError(f"{name} not healthy: {logs(podman, name)[-3000:]}")
        time.sleep(0.1)


def logs(podman: Podman, name: str) -> str:
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


def sht(*args: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sht", *args], env={**os.environ, "SHT_TOKEN": token},
                          capture_output=True, text=True, timeout=60)


def test_store_and_node_containers(image: Image, tmp_path: Path):
    podman, run_id = image.podman, secrets.token_hex(4)
    data, spool = tmp_path / "data", tmp_path / "spool"
    data.mkdir()
    spool.mkdir()
    store_port, node_port = free_port(), free_port()
    store_url, store, node = f"http://127.0.0.1:{store_port}", f"sht-store-{run_id}", f"sht-node-{run_id}"
    started = time.monotonic()
    # :U gives the bind mount to the image's user (10001), as `chown 10001:10001` would (docs/deploy.md).
    podman("run", "--detach", "--name", store, "--network", "host", "--volume", f"{data}:/data:U",
           image.tag, "store", "--root", "/data", "--host", "127.0.0.1", "--port", str(store_port), "--detect", "off")
    wait_health(podman, store, store_url)
    ready_s = time.monotonic() - started
    print(f"\nstore container: podman run to /health 200 in {ready_s:.2f} s")
    tokens = {role: podman("exec", store, "sht", "token", "create", "--root", "/data", "--role", role,
                           "--subject", subject).stdout.strip()
              for role, subject in (("node", "node0"), ("viewer", "tester"))}
    assert all(t.startswith("ey") for t in tokens.values()), tokens
    # The token reaches the node from the environment (podman passes SHT_TOKEN on), never its command line.
    podman("run", "--detach", "--name", node, "--network", "host", "--env", "SHT_TOKEN",
           "--volume", f"{spool}:/spool:U", image.tag, "node", "--id", "node0", "--host", "127.0.0.1",
           "--port", str(node_port), "--store", f"ws://127.0.0.1:{store_port}", "--spool", "/spool",
           "--segment-seconds", "1", "--size", "320x240", "--fps", str(FPS),
           "--camera", "cam0=synthetic", "--camera", "cam1=synthetic:busy", env={"SHT_TOKEN": tokens["node"]})
    assert tokens["node"] not in podman("inspect", "--format", "{{.Config.Cmd}}", node).stdout
    wait_health(podman, node, f"http://127.0.0.1:{node_port}")
    relay, relay_port = f"sht-relay-{run_id}", free_port()  # a third role: its healthcheck finds its port too
    podman("run", "--detach", "--name", relay, "--network", "host", "--env", "SHT_TOKEN", image.tag, "relay",
           "--store", store_url, "--host", "127.0.0.1", "--port", str(relay_port), env={"SHT_TOKEN": tokens["viewer"]})
    wait_health(podman, relay, f"http://127.0.0.1:{relay_port}")
    for name in (store, node, relay):  # the image's HEALTHCHECK, run as podman runs it
        check = podman("healthcheck", "run", name, check=False)
        assert check.returncode == 0 and "unhealthy" not in check.stdout, (name, check.stdout, check.stderr)
    podman("stop", "--time", "20", relay, timeout=40)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", relay).stdout.strip() == "0"

    deadline = time.monotonic() + 30
    while len(list((data / "segments").rglob("*.mp4"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    stop_us = time.time_ns() // 1000
    podman("stop", "--time", "40", node, timeout=60)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", node).stdout.strip() == "0"
    node_log = logs(podman, node)
    assert "finishing segments in progress" in node_log and "Traceback" not in node_log, node_log[-3000:]
    assert not list(spool.rglob("*.mp4")), "the node stopped with segments not uploaded"

    found = sht("search", "--store", store_url, "--from", "10m ago", "--json", token=tokens["viewer"])
    assert found.returncode == 0, found.stderr
    listed = json.loads(found.stdout)
    with sqlite3.connect(data / "index.sqlite3") as conn:
        rows = conn.execute("SELECT camera, start_us, end_us, size_bytes, sha256, path FROM segments "
                            "ORDER BY camera, start_us").fetchall()
    assert sorted((s["camera"], s["start_us"], s["sha256"]) for s in listed) == \
        sorted((r[0], r[1], r[4]) for r in rows)
    for camera in ("cam0", "cam1"):
        mine = [r for r in rows if r[0] == camera]
        assert len(mine) >= 3, mine
        for a, b in zip(mine, mine[1:], strict=False):  # contiguous: no segment missing in between
            assert abs(b[1] - a[2]) < 1_000_000 / FPS, (a, b)
        assert mine[-1][2] >= stop_us - 1_000_000 / FPS, "the segment in progress at the stop was not finished"
    for _camera, _start, _end, size, sha, rel in rows:
        stored = (data / rel).read_bytes()
        assert len(stored) == size and sha256_hex(stored) == sha

    podman("stop", "--time", "30", store, timeout=60)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", store).stdout.strip() == "0"
    assert "Traceback" not in logs(podman, store)
    podman("rm", "--volumes", store, node, relay)
    assert podman("ps", "--all", "--quiet").stdout.strip() == ""
