"""deploy/compose.yaml: valid against the Compose Specification's JSON schema (check-jsonschema's vendored copy,
the schema docker compose validates with), and coherent: every sht service's command is one ``sht`` accepts,
every reference names something declared, no secret in the file, nodes given time to finish a segment."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from sht.cli import build_parser

DEPLOY = Path(__file__).parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SHT_IMAGE = re.compile(r"^localhost/sht-cctv:")


def services() -> dict[str, dict[str, Any]]:
    return YAML(typ="safe").load(COMPOSE.read_text())["services"]


def sht_argv(service: dict[str, Any]) -> list[str]:
    """What ``sht`` gets in this service: the command after the image's entrypoint (``sht``), or after the token
    wrapper's ``exec sht ROLE "$@"``."""
    entrypoint, command = service.get("entrypoint"), [str(a) for a in service.get("command", [])]
    if entrypoint is None:
        return command
    match = re.search(r'exec sht (\w+) "\$\$@"', " ".join(entrypoint))
    assert match, entrypoint
    return [match.group(1), *command]


def test_compose_file_matches_the_compose_spec_schema(tmp_path: Path):
    checker = shutil.which("check-jsonschema") or (Path(sys.executable).parent / "check-jsonschema")
    if not Path(checker).exists():
        pytest.skip("needs check-jsonschema: python3 -m pip install -e '.[dev]'")
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "compose.yaml"  # and it fails on what the schema forbids
    bad.write_text(COMPOSE.read_text().replace("stop_grace_period: 40s", "stop_grace_period: 40s\n  bogus: 1", 1))
    done = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "bogus" in done.stdout, done.stdout


def test_every_sht_service_runs_a_command_sht_accepts():
    parser = build_parser()
    roles: dict[str, list[str]] = {}
    for name, service in services().items():
        if not SHT_IMAGE.match(service["image"]) or service.get("restart") == "no":
            continue
        argv = sht_argv(service)
        args = parser.parse_args(argv)  # exits (fails the test) on a flag sht does not have
        roles.setdefault(argv[0], []).append(name)
        if argv[0] == "node":
            assert args.spool == "/spool" and args.id and args.store, (name, argv)
            assert service["environment"]["SHT_WHO"] == args.id  # its own token file
        if argv[0] == "store" and (args.index or args.segments):
            assert "cluster" in service["build"]["args"]["SHT_EXTRAS"], name  # psycopg, aiobotocore
    assert roles == {"store": ["store", "store-a", "store-b"], "node": ["node1", "node2", "node3", "cnode1", "cnode2",
                     "cnode3"], "relay": ["relay", "cluster-relay"]}, roles


def test_references_profiles_and_secrets():
    doc = YAML(typ="safe").load(COMPOSE.read_text())
    all_services = doc["services"]
    volumes = set(doc["volumes"])
    embedded = {n for n, s in all_services.items() if "profiles" not in s}
    assert embedded == {"tokens", "store", "node1", "node2", "node3", "relay"}
    for name, service in all_services.items():
        deps = service.get("depends_on", [])
        for dep in deps:
            assert dep in all_services, (name, dep)
            if name in embedded:
                assert dep in embedded, f"{name} (no profile) depends on {dep} of a profile"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes or (DEPLOY / source).exists(), (name, mount)
        for env_file in service.get("env_file", []):
            assert (DEPLOY / f"{env_file}.example").exists(), env_file  # `just compose-up` makes it from this
        if SHT_IMAGE.match(service["image"]):
            assert "user" not in service, name  # the image's own unprivileged user
            assert service["stop_grace_period"] == "40s", name  # > the node's 15 s shutdown upload
    text = COMPOSE.read_text()
    assert "eyJ" not in text and not re.search(r"(?i)(password|secret)[^\n]*=\s*[\w-]{6,}", text)
    assert "compose.env" in (DEPLOY / ".gitignore").read_text().split()


def test_compose_env_example_has_what_the_cluster_reads():
    example = (DEPLOY / "compose.env.example").read_text()
    keys = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    assert keys == {"POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    text = COMPOSE.read_text()
    for key in keys:
        assert f"$${key}" in text or key.startswith("POSTGRES_"), key


def test_nginx_compose_conf_passes_nginx_t(tmp_path: Path):
    """deploy/nginx-compose.conf through ``nginx -t`` (its service names made loopback: nginx resolves upstreams)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("needs nginx: apt-get install nginx (.ci/run installs it)")
    site = (DEPLOY / "nginx-compose.conf").read_text()
    for old in ("store-a:8100", "store-b:8100", "cluster-relay:8200", "listen 8080;"):
        assert old in site, old
    site = site.replace("store-a:", "127.0.0.1:").replace("store-b:8100", "127.0.0.2:8100")
    site = site.replace("cluster-relay:", "127.0.0.1:").replace("listen 8080;", "listen 127.0.0.1:18080;")
    (tmp_path / "site.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\naccess_log off;\n{temp}include {tmp_path}/site.conf;\n}}\n")
    done = subprocess.run([nginx, "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
