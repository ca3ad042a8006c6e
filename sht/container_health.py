"""``python -m sht.container_health``: the image's HEALTHCHECK (deploy/Containerfile), whatever role it runs.

One image runs every role on its own port, so the check reads the container's own command: the first process
running ``sht ROLE ...`` (PID 1, or the child of an init such as ``--init``), parsed with ``sht``'s own parser, so
a role's default port, ``--host``, ``--port`` and ``--tls-cert`` are exactly what the process itself used (a node's
``--config`` file for its port and host). ``$SHT_HEALTH_URL`` overrides it.

Healthy: ``/health`` answers 200, or 401/403 when the server was started with ``--closed-health`` (it is up; the
check has no token). Roles without ``/health`` (``detect``, ``console``, one-shot commands) pass. Exit 0 healthy,
1 not (Docker's convention), with one line on stdout saying why (``podman healthcheck run``, ``docker inspect``).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

SERVING = ("node", "store", "relay")
WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def sht_command(cmdline: list[str]) -> list[str] | None:
    """The ``sht`` arguments (``["store", "--root", "/data"]``) in a process's argv, or None if it is not sht."""
    for i, arg in enumerate(cmdline):
        if os.path.basename(arg) == "sht" or (arg == "sht" and i > 0 and cmdline[i - 1] == "-m"):
            return cmdline[i + 1:]
    return None


def container_command(proc: Path = Path("/proc")) -> list[str] | None:
    """The first process (lowest pid) running sht, read from ``/proc/PID/cmdline``."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        args = sht_command(raw.decode(errors="replace").split("\0")[:-1])
        if args:
            return args
    return None


def health_url(args: list[str]) -> str | None:
    """``http(s)://HOST:PORT/health`` of the server ``sht ARGS`` runs; None for a role without one."""
    if not args or args[0] not in SERVING:
        return None
    from sht.cli import build_parser

    try:
        ns = build_parser().parse_args(args)
    except SystemExit:
        return None
    host, port = ns.host, ns.port
    if args[0] == "node" and ns.config and (host is None or port is None):
        from shared.config import load_node_config

        config = load_node_config(ns.config)
        host, port = host or config.host, port or config.port
    host = "127.0.0.1" if host in WILDCARDS or host is None else host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    scheme = "https" if getattr(ns, "tls_cert", None) else "http"
    return f"{scheme}://{host}:{port or 8000}/health"


def check(url: str, timeout: float = 4.0) -> tuple[bool, str]:
    context = ssl.create_default_context()
    context.check_hostname = False  # our own process on this host: is it up, not who it is
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403), f"{url}: {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"


def main() -> int:
    url = os.environ.get("SHT_HEALTH_URL")
    if not url:
        args = container_command()
        if args is None:
            print("no sht process in this container")
            return 1
        url = health_url(args)
        if url is None:
            print(f"sht {args[0] if args else ''}: no /health to check")
            return 0
    ok, why = check(url)
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
