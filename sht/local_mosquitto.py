"""A throwaway MQTT broker on this machine, for the tests (tests/notify/mosquitto.py) and ``just bench notify``:
Debian's ``mosquitto`` on a free loopback port, with its own config in a temporary directory (``listener PORT
127.0.0.1``, log to a file there), stopped (killed if need be) and removed when its ``running_mosquitto`` block
ends. The sibling of sht/local_servers.py's PostgreSQL and SeaweedFS (a module of its own to keep each short).

``running_mosquitto()`` takes anonymous clients; ``running_mosquitto(users={"name": "password"})`` takes only those
users, from a password file made by ``mosquitto_passwd -b -c``. Persistence is off unless ``persistent=True`` (then
sessions and retained messages survive a kill, saved after every change). Started as root, mosquitto drops to the
``mosquitto`` user Debian's package makes, so the directory and its files are that user's. ``kill()`` and
``start()`` take the broker away and bring it back on the same port (an outage).

A part that is not installed raises ``MissingServer``, whose message says what to install.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sht.local_servers import MissingServer, free_port

__all__ = ["BROKER_USER", "MOSQUITTO_HINT", "START_TIMEOUT_S", "Mosquitto", "MissingServer", "free_port",
           "mosquitto_binary", "mosquitto_missing", "running_mosquitto"]

START_TIMEOUT_S = 10.0
BROKER_USER = "mosquitto"
MOSQUITTO_HINT = ("Mosquitto is not installed: apt-get install mosquitto mosquitto-clients (Debian puts the broker "
                  "in /usr/sbin/mosquitto)")


def mosquitto_binary(name: str = "mosquitto", *extra_dirs: str) -> str:
    """``name`` (``mosquitto``, ``mosquitto_passwd``) on PATH or in ``extra_dirs``; ``MissingServer`` if none."""
    extra_dirs = extra_dirs or ("/usr/sbin", "/usr/bin")
    found = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None)
    if found is None:
        raise MissingServer(MOSQUITTO_HINT)
    return found


def _broker_user() -> pwd.struct_passwd | None:
    """The user mosquitto drops to when started as root (None: not root, it runs as us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(BROKER_USER)
    except KeyError:
        raise MissingServer(f"no {BROKER_USER} user for mosquitto to run as: {MOSQUITTO_HINT}") from None


def mosquitto_missing() -> str | None:
    """Why a throwaway broker cannot run here (what to install), or None."""
    try:
        mosquitto_binary()
        _broker_user()
    except MissingServer as exc:
        return str(exc)
    return None


@dataclass
class Mosquitto:
    binary: str
    directory: Path
    port: int
    users: dict[str, str] = field(default_factory=dict)
    persistent: bool = False  # keep sessions and retained messages across kill() and start()
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def config(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    def url(self, prefix: str = "sht", user: str | None = None, password: str | None = None) -> str:
        credentials = f"{user}:{password}@" if user is not None else ""
        return f"mqtt://{credentials}127.0.0.1:{self.port}/{prefix}"

    def write_config(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice", "log_type information"]
        if self.persistent:
            # Saved after every change, so even a SIGKILL keeps a subscriber's session (its subscriptions): what
            # is published to it while it is away is queued for it once the broker is back.
            lines += ["persistence true", f"persistence_location {self.directory}/", "autosave_interval 1",
                      "autosave_on_changes true"]
        else:
            lines.append("persistence false")
        if self.users:
            passwd = mosquitto_binary("mosquitto_passwd", "/usr/bin")
            password_file = self.directory / "passwords"
            for i, (user, password) in enumerate(self.users.items()):
                args = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run([passwd, *args, str(password_file), user, password], check=True, capture_output=True,
                               timeout=30)
            _give_to_broker(password_file)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.config.write_text("\n".join(lines) + "\n")
        _give_to_broker(self.config)

    def start(self) -> None:
        """Start the broker on its port and wait until it takes connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s: "
                                       f"{self.log.read_text()}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the broker is gone at once, without closing anything cleanly (without ``persistent``, retained
        messages and sessions go with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _give_to_broker(path: Path) -> None:
    """Readable by the user mosquitto drops to when started as root (nobody else: it may hold passwords)."""
    owner = _broker_user()
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    path.chmod(0o600)


@contextmanager
def running_mosquitto(users: dict[str, str] | None = None, persistent: bool = False) -> Iterator[Mosquitto]:
    """A broker in a new temporary directory, stopped and removed afterwards."""
    binary = mosquitto_binary()
    owner = _broker_user()
    # Not under a root-only temporary tree (pytest's is): the broker reads its files as mosquitto.
    directory = Path(tempfile.mkdtemp(prefix="sht-mqtt-"))
    if owner is not None:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    broker = Mosquitto(binary, directory, free_port(), dict(users or {}), persistent)
    try:
        broker.write_config()
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
