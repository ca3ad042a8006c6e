"""``GET /metrics`` on a real node and store: what Prometheus scrapes passes ``promtool check metrics``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.system.test_security import start_system, status_of

PROMTOOL = shutil.which("promtool")


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


def value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {sample!r} in:\n{text}")


def promtool_check(text: str) -> None:
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus; "
                    ".ci/run installs it)")
def test_node_and_store_metrics_pass_promtool(processes, tmp_path: Path):
    store_port, node_port, root, toks = start_system(processes, tmp_path)
    node, store = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{store_port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # a couple of uploaded segments and a query
        _, text = scrape(store + "/metrics")
        if value(text, 'sht_ingest_segments_total{result="stored"}') >= 2:
            break
        time.sleep(0.3)
    assert status_of(f"ws://127.0.0.1:{store_port}/api", toks["viewer"])[0] == 101
    content_type, store_text = scrape(store + "/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    _, node_text = scrape(node + "/metrics")
    promtool_check(node_text)
    promtool_check(store_text)

    assert value(node_text, 'sht_camera_frames_encoded_total{camera="cam0"}') > 10
    assert value(node_text, 'sht_camera_encode_seconds_count{camera="cam0"}') > 10
    assert value(node_text, 'sht_camera_up{camera="cam0"}') == 1
    # One viewer: the store's object detection holds each camera's stream (docs/objects.md), so an event's
    # first frames are there the moment it opens.
    assert value(node_text, 'sht_camera_viewers{camera="cam0"}') == 1
    assert value(node_text, "sht_store_link_up") == 1
    assert value(node_text, 'sht_upload_items_total{result="acknowledged"}') >= 2
    for name in ("sht_spool_bytes", "sht_spool_oldest_age_seconds", "process_cpu_seconds_total",
                 'sht_camera_bitrate_bytes_per_second{camera="cam0"}',
                 'sht_camera_frames_dropped_total{camera="cam0"}'):
        value(node_text, name)
    assert value(store_text, 'sht_node_up{node="node0"}') == 1
    assert value(store_text, 'sht_ingest_seconds_count') >= 2
    assert value(store_text, 'sht_retention_deleted_segments_total{reason="age"}') == 0
    assert value(store_text, "sht_store_segments") >= 2
    assert value(store_text, 'sht_detect_dropped_frames_total{camera="cam0",device="cpu"}') >= 0
    assert value(store_text, "sht_detect_queue") == 0
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(node + "/metricsx", timeout=5)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_deploy_scrape_config_and_dashboard_queries_are_valid(tmp_path: Path):
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    out = subprocess.run([PROMTOOL, "check", "config", str(deploy / "prometheus.yml")], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    dashboard = json.loads((deploy / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"sht:dashboard_{i}", "expr": e}
                                                         for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yml").write_text(json.dumps(rules))  # JSON is YAML
    out = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
