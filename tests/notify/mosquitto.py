"""A real MQTT broker for tests: sht/local_mosquitto.py's throwaway Debian ``mosquitto`` on a free loopback port,
with its own config in a temporary directory (``listener PORT 127.0.0.1``), stopped (killed if need be)
afterwards. ``just bench notify`` starts its broker with the same code.

``running_mosquitto()`` takes anonymous clients; ``running_mosquitto(users={"name": "password"})`` takes only those
users, from a password file made by ``mosquitto_passwd -b -c``. Persistence is off unless ``persistent=True`` (then
sessions and retained messages survive a kill, saved after every change). Started as root, mosquitto drops to the
``mosquitto`` user Debian's package makes, so the directory and its files are that user's. ``kill()`` and
``start()`` take the broker away and bring it back on the same port (an outage).

A missing binary fails the test with how to install it (never a skip: CI must run these), unless
``SHT_ALLOW_MISSING_SERVERS=1`` asks for a skip (as tests/store/postgres.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

from sht import local_mosquitto
from sht.local_mosquitto import BROKER_USER, START_TIMEOUT_S, Mosquitto, free_port

__all__ = ["BROKER_USER", "INSTALL_HINT", "START_TIMEOUT_S", "Mosquitto", "free_port", "running_mosquitto",
           "speak_tls"]

INSTALL_HINT = (f"{local_mosquitto.MOSQUITTO_HINT}; .ci/run installs it when missing. Set "
                "SHT_ALLOW_MISSING_SERVERS=1 to skip these tests instead")


def _missing(why: str) -> NoReturn:
    if os.environ.get("SHT_ALLOW_MISSING_SERVERS") == "1":
        pytest.skip(why)
    pytest.fail(why)


@contextmanager
def running_mosquitto(users: dict[str, str] | None = None, persistent: bool = False) -> Iterator[Mosquitto]:
    why = local_mosquitto.mosquitto_missing()
    if why is None and users:
        try:
            local_mosquitto.mosquitto_binary("mosquitto_passwd", "/usr/bin")
        except local_mosquitto.MissingServer as exc:
            why = str(exc)
    if why is not None:
        _missing(why if why != local_mosquitto.MOSQUITTO_HINT else INSTALL_HINT)
    with local_mosquitto.running_mosquitto(users, persistent) as broker:
        yield broker


def speak_tls(broker: Mosquitto, ca: str, cert: str, key: str) -> None:
    """Restart ``broker`` with its listener TLS only: its certificate and key, the CA (PEM files, copied into its
    directory for the user it runs as)."""
    broker.stop()
    lines = []
    for name, source in (("cafile", ca), ("certfile", cert), ("keyfile", key)):
        copy = broker.directory / f"{name}.pem"
        shutil.copyfile(source, copy)
        local_mosquitto._give_to_broker(copy)
        lines.append(f"{name} {copy}")
    with open(broker.config, "a") as config:
        config.write("\n".join(lines) + "\n")
    broker.start()
