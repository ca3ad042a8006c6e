"""Podman for the container tests and ``just bench container``: throwaway storage, a stand-in base image, the real
deploy/Containerfile built, containers on the host network.

This machine (and CI) cannot pull from Docker Hub, so the Containerfile's ``FROM`` image,
``python:3.11-slim-bookworm``, is stood in for by a Debian bookworm made here with mmdebstrap: minbase with
python3 (3.11) and python3-venv, no recommends, docs, man pages and locales left out as Docker's slim images leave
them out (~130 MB, about the real image's size), tagged with that name, so that ``podman build --pull=never``
builds the real file unchanged. Its Python is /usr/bin/python3 where the real one's is /usr/local/bin/python3;
the Containerfile names neither.

The build installs the dependencies from wheels made on the host (tools/image_wheels.py) and put in the build
context's deploy/wheelhouse/: containers here reach pypi.org only through a TLS-intercepting proxy whose CA the
host trusts and a container does not, so pip inside the build fails certificate verification (docs/deploy.md).

The rootfs and the wheels are cached under ``$TMPDIR/sht-container-cache/``, keyed by what makes them (the
mmdebstrap arguments; the requirements, Python version and machine). Everything else, storage, containers,
images and volumes, lives in the ``Podman`` object's directory, removed by ``close()``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"  # deploy/Containerfile's PYTHON_IMAGE
# What the real image sets (its PATH has /usr/local/bin first, where its Python is; a C.UTF-8 locale)
BASE_ENV = ("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
CACHE = Path(tempfile.gettempdir()) / "sht-container-cache"
CACHE_MAX_AGE_S = 30 * 86400  # a month-old rootfs is made again (Debian's security updates)
TOOLS = {"podman": "podman", "mmdebstrap": "mmdebstrap", "runc": "runc"}  # binary -> Debian package
INSTALL = "apt-get install podman buildah mmdebstrap runc"
MMDEBSTRAP = [
    "--variant=minbase", "--include=python3,python3-venv", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*", "bookworm",
]
# Podman on this machine: runc (Debian's crun fails here), the ulimits a container may have, no systemd.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
CONTEXT = ("pyproject.toml", "README.md", ".dockerignore", "shared", "node", "store", "console", "sht",
           "deploy/Containerfile", "deploy/wheelhouse/README.md")


def missing_tools() -> list[str]:
    return [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_rootfs(cache: Path = CACHE) -> Path:
    """The stand-in base as a rootfs tarball, made with mmdebstrap (~30 s) unless cached."""
    tar = cache / f"bookworm-python3-{_key(platform.machine(), *MMDEBSTRAP)}.tar"
    if tar.exists() and time.time() - tar.stat().st_mtime < CACHE_MAX_AGE_S:
        return tar
    cache.mkdir(parents=True, exist_ok=True)
    part = tar.with_suffix(f".{os.getpid()}.part.tar")
    subprocess.run(["mmdebstrap", "--quiet", *MMDEBSTRAP, str(part)], check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    part.replace(tar)
    return tar


def wheelhouse(extras: str = "mqtt", cache: Path = CACHE) -> Path:
    """Wheels for the image's dependencies (tools/image_wheels.py), made unless cached."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from image_wheels import requirements
    finally:
        sys.path.pop(0)
    reqs = requirements([e for e in extras.split(",") if e])
    where = cache / f"wheels-{_key(platform.machine(), sys.version, *reqs)}"
    if not where.exists():  # made aside and renamed: a run beside this one never sees half of it
        part = where.with_name(f"{where.name}.{os.getpid()}.part")
        shutil.rmtree(part, ignore_errors=True)
        subprocess.run([sys.executable, str(REPO / "tools/image_wheels.py"), "--extras", extras, str(part)],
                       check=True, timeout=600)
        try:
            part.rename(where)
        except OSError:  # another run got there first
            shutil.rmtree(part, ignore_errors=True)
    return where


def build_context(dest: Path, wheels: Path) -> Path:
    """What ``podman build`` is given: the files deploy/Containerfile copies, and the wheels."""
    for name in CONTEXT:
        src, dst = REPO / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    for whl in wheels.glob("*.whl"):
        shutil.copy2(whl, dest / "deploy/wheelhouse" / whl.name)
    return dest


class Podman:
    """``podman`` with its storage, run state and configuration in ``workdir`` (removed by ``close``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        # podman refuses a runroot over 50 characters (its sockets' paths): pytest's temporary directories are
        # longer under xdist (.../pytest-N/popen-gw0/podman0/...), so the run state lives in a short one of its own
        self.runroot = Path(tempfile.mkdtemp(prefix="sht-podman-", dir="/tmp"))
        self.base = ["podman", "--root", str(workdir / "root"), "--runroot", str(self.runroot),
                     "--tmpdir", str(workdir / "tmp")]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; ``env`` adds to its environment (``--env NAME`` passes a variable on from there)."""
        done = subprocess.run([*self.base, *args], env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])}... exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def import_base(self, rootfs: Path) -> float:
        """The stand-in base imported as BASE_IMAGE; seconds taken."""
        t0 = time.monotonic()
        self("import", *(f"--change=ENV {env}" for env in BASE_ENV), "--change=CMD [\"python3\"]", str(rootfs),
             BASE_IMAGE, timeout=300)
        return time.monotonic() - t0

    def build(self, context: Path, tag: str, *args: str) -> float:
        """deploy/Containerfile built from ``context`` (docker format: it keeps the HEALTHCHECK); seconds taken."""
        t0 = time.monotonic()
        self("build", "--pull=never", "--format", "docker", "--layers=false", "-f", "deploy/Containerfile",
             "-t", tag, *args, str(context), timeout=900)
        return time.monotonic() - t0

    def image_size(self, tag: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())

    def close(self) -> None:
        """Every container, image and volume this storage holds, then the storage itself."""
        self("rm", "--all", "--force", "--volumes", "--time", "0", check=False)
        self("system", "reset", "--force", check=False, timeout=300)
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)
