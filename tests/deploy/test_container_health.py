"""sht/container_health.py, the image's HEALTHCHECK: the role's /health found from its command line, and judged
against real servers (a store process; a plain HTTP server for the codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sht.container_health import check, container_command, health_url, sht_command
from tests.system.conftest import Processes, free_port, wait_for_health


def test_sht_command_from_argv():
    assert sht_command(["/opt/sht/bin/python3", "/opt/sht/bin/sht", "store", "--root", "/data"]) == \
        ["store", "--root", "/data"]
    assert sht_command(["python3", "-m", "sht", "relay", "--store", "http://s:8100"]) == ["relay", "--store",
                                                                                       "http://s:8100"]
    assert sht_command(["/usr/bin/catatonit", "--", "/opt/sht/bin/sht"]) == []
    assert sht_command(["/bin/sh", "-c", "sleep 1"]) is None


def test_health_url_per_role(tmp_path):
    assert health_url(["store", "--root", "/data"]) == "http://127.0.0.1:8100/health"
    assert health_url(["store", "--port=9100", "--host", "10.0.0.5"]) == "http://10.0.0.5:9100/health"
    assert health_url(["relay", "--store", "http://nas:8100"]) == "http://127.0.0.1:8200/health"
    assert health_url(["node", "--id", "n", "--camera", "c=synthetic"]) == "http://127.0.0.1:8000/health"
    assert health_url(["store", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--host", "::1"]) == \
        "https://[::1]:8100/health"
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"id": "pi0", "port": 8010, "cameras": [{"id": "c", "source": "synthetic"}]}))
    assert health_url(["node", "--config", str(config)]) == "http://127.0.0.1:8010/health"
    assert health_url(["node", "--config", str(config), "--port", "8020"]) == "http://127.0.0.1:8020/health"
    for no_health in (["detect", "--store", "http://nas:8100"], ["console"], ["search"], [],
                      ["store", "--no-such-flag"]):
        assert health_url(no_health) is None


def test_container_command_reads_proc(tmp_path):
    for pid, argv in ((1, ["/usr/bin/catatonit", "--", "/opt/sht/bin/python", "-c", "x"]),
                      (7, ["/opt/sht/bin/python3", "/opt/sht/bin/sht", "node", "--id", "n0"]),
                      (9, ["/opt/sht/bin/python3", "/opt/sht/bin/sht", "store"])):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()
    assert container_command(tmp_path) == ["node", "--id", "n0"]


@pytest.fixture
def http_codes():
    """A plain HTTP server answering /health with the code in the test's ``codes[0]``."""
    codes = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(codes[0])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health", codes
    server.shutdown()
    server.server_close()


def test_check_codes(http_codes):
    url, codes = http_codes
    for code, healthy in ((200, True), (401, True), (403, True), (503, False), (500, False), (404, False)):
        codes[0] = code
        ok, why = check(url)
        assert ok is healthy and str(code) in why, (code, why)
    ok, why = check(f"http://127.0.0.1:{free_port()}/health", timeout=1)
    assert not ok and why.startswith("http://127.0.0.1:")


@pytest.fixture
def processes(tmp_path):
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path / "logs")
    yield procs
    procs.stop_all()


def test_main_against_a_real_store(processes: Processes, tmp_path: Path):
    port = free_port()
    proc = processes.start("store", "store", "--root", str(tmp_path / "store"), "--host", "127.0.0.1",
                           "--port", str(port), "--detect", "off")
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    url = health_url(["store", "--host", "127.0.0.1", "--port", str(port)])
    assert url == f"http://127.0.0.1:{port}/health"
    run = subprocess.run([sys.executable, "-m", "sht.container_health"], env={**os.environ, "SHT_HEALTH_URL": url},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == f"{url}: 200", run
    processes.stop_all()
    run = subprocess.run([sys.executable, "-m", "sht.container_health"], env={**os.environ, "SHT_HEALTH_URL": url},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and url in run.stdout, run
