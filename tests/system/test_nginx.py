"""deploy/nginx-sht.conf with a real nginx on loopback: TLS, viewers spread over two relays, one relay killed."""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.system.conftest import free_port, get_json, wait_for_health
from tests.system.live_clients import Viewer, start_fleet, wait_until
from tests.system.test_security import make_certificates

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nginx-sht.conf"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx; "
                                ".ci/run installs it)")


def nginx_config(tmp: Path, port: int, relays: list[int], store: int, cert: str, key: str) -> Path:
    """The shipped config, with this test's ports and certificate, inside a minimal main config."""
    site = DEPLOY.read_text()
    for old, new in (("127.0.0.1:8201", f"127.0.0.1:{relays[0]}"), ("127.0.0.1:8202", f"127.0.0.1:{relays[1]}"),
                     ("127.0.0.1:8100", f"127.0.0.1:{store}"), ("listen 443 ssl", f"listen 127.0.0.1:{port} ssl"),
                     ("/etc/ssl/sht/cctv.pem", cert), ("/etc/ssl/sht/cctv.key", key)):
        assert old in site, old
        site = site.replace(old, new)
    (tmp / "sht.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                      "scgi"))
    main = tmp / "nginx.conf"
    main.write_text(f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log info;\n"
                    f"events {{ worker_connections 256; }}\n"
                    f"http {{\naccess_log {tmp}/access.log;\n{temp}include {tmp}/sht.conf;\n}}\n")
    return main


def test_nginx_spreads_viewers_and_fails_over_when_a_relay_dies(processes, tmp_path):
    assert NGINX is not None
    store_port, _, toks = start_fleet(processes, tmp_path, nodes=1, cameras=2, fps=10)
    store = f"http://127.0.0.1:{store_port}"
    relay_ports = [free_port(), free_port()]
    relays = [processes.start(f"relay{i}", "relay", "--store", store, "--host", "127.0.0.1", "--port", str(port),
                              token=toks["viewer"]) for i, port in enumerate(relay_ports)]
    for proc, port in zip(relays, relay_ports, strict=True):
        wait_for_health(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + 10
    while not all(get_json(f"http://127.0.0.1:{p}/health")["cameras"] for p in relay_ports):
        assert time.monotonic() < deadline, "relays never learned the fleet from the store"
        time.sleep(0.2)

    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    conf = nginx_config(tmp_path, port, relay_ports, store_port, cert, key)
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=ca)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/?token={quote(toks['viewer'])}",
                                            context=context, timeout=2) as page:
                    assert b"<title>SHT CCTV" in page.read()  # the live page, from the store
                    break
            except urllib.error.URLError:
                assert nginx.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError):  # monitoring is not exposed through the proxy
            urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context, timeout=2)

        async def scenario() -> dict[str, float]:
            viewers = [Viewer(f"wss://127.0.0.1:{port}/live/cam{i % 2}", toks["viewer"], reconnect=True,
                              ssl_context=context).start() for i in range(6)]
            assert await wait_until(lambda: all(len(v.frames) >= 10 for v in viewers), 15)
            counts = [await asyncio.to_thread(_relay_viewers, p) for p in relay_ports]
            assert sorted(counts) == [3, 3], f"least_conn spreads viewers over both relays: {counts}"
            victim = 0
            relays[victim].send_signal(signal.SIGKILL)
            relays[victim].wait()
            killed = time.monotonic()
            assert await wait_until(lambda: all(v.frames_since(killed) >= 20 for v in viewers), 20), \
                [v.frames_since(killed) for v in viewers]
            assert await asyncio.to_thread(_relay_viewers, relay_ports[1 - victim]) == 6
            gaps = []
            for v in viewers:
                times = [t for t, _, _ in v.frames]
                gaps.append(max(b - a for a, b in zip(times, times[1:], strict=False)))
            moved = [v for v in viewers if v.connects == 2]
            assert len(moved) == 3 and all(v.connects <= 2 for v in viewers)
            for v in viewers:
                await v.stop()
            return {"max_gap_s": max(gaps)}

        result = asyncio.run(scenario())
        assert result["max_gap_s"] < 5.0, result
        print(f"nginx failover: longest gap in any viewer's frames {result['max_gap_s']:.2f} s")
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()


def _relay_viewers(port: int) -> int:
    return sum(u["viewers"] for u in get_json(f"http://127.0.0.1:{port}/health")["upstreams"].values())
