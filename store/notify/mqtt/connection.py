"""The store's connection to the broker (aiomqtt): one at a time, its last will, reconnects with backoff, and what
/health says about it.

``BrokerLink.run(session)`` connects, calls ``session(client)`` and, when the connection fails (the broker away, a
network error, the broker refusing the store), says why, waits (``shared/backoff.py``, at most
``MAX_RECONNECT_S``) and connects again; it returns only when cancelled. The last will is ``offline``, retained,
on ``PREFIX/available``: the broker publishes it when the store's connection dies without a goodbye.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt

from shared.backoff import Backoff
from shared.clock import iso_utc
from store.notify.mqtt.options import PASSWORD_ENV, MqttOptions
from store.notify.mqtt.topics import OFFLINE, Topics

log = logging.getLogger(__name__)

MAX_RECONNECT_S = 5.0  # a broker back after an outage is found within this
KEEPALIVE_S = 30  # a broker that vanished without closing the connection is noticed within 1.5 x this
OPERATION_TIMEOUT_S = 10.0  # connect, subscribe, one publish's acknowledgement
REPEAT_LOG_S = 60.0  # the same connection error is logged again at most this often

Session = Callable[[aiomqtt.Client], Awaitable[None]]


def describe_error(exc: BaseException, options: MqttOptions) -> str:
    """What went wrong, and what to do about it, in one line (never the password)."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "not authori" in lowered or "bad user name or password" in lowered:
        where = f"--mqtt's URL or ${PASSWORD_ENV}" if options.username else "--mqtt (it gave no user)"
        return f"the broker refused the store: {text}; check the user and password in {where}"
    if "refused" in lowered or "errno 111" in lowered:
        return f"cannot connect to {options.host}:{options.port}: {text} (is the broker running there?)"
    if "certificate" in lowered or "ssl" in lowered:
        return f"TLS with {options.host}:{options.port} failed: {text} (--mqtt-ca names the CA that signed it)"
    return text


def client_id(options: MqttOptions) -> str:
    """Unique per process: two stores (or a restarted one still known to the broker) never take each other's
    session over."""
    return f"sht-store-{socket.gethostname()[:20]}-{os.getpid()}"


def tls_context(options: MqttOptions) -> ssl.SSLContext | None:
    if not options.tls:
        return None
    return ssl.create_default_context(cafile=options.ca_file)


class BrokerLink:
    def __init__(self, options: MqttOptions, topics: Topics) -> None:
        self.options, self.topics = options, topics
        self.state = "connecting"  # connecting | connected | failing | stopped
        self.last_error: str | None = None
        self.last_error_us: int | None = None
        self.connected_since_us: int | None = None
        self.connects = 0
        self._logged: tuple[str, float] | None = None  # (error, when) last logged

    def health(self) -> dict[str, Any]:
        return {"state": self.state, "broker": self.options.describe(), "connects": self.connects,
                "connected_since": None if self.connected_since_us is None else iso_utc(self.connected_since_us),
                "last_error": self.last_error,
                "last_error_at": None if self.last_error_us is None else iso_utc(self.last_error_us)}

    def client(self, tls: ssl.SSLContext | None = None) -> aiomqtt.Client:
        """``tls``: ``tls_context(options)`` (made off the event loop: it reads the CA file, ~15 ms)."""
        options = self.options
        return aiomqtt.Client(
            options.host, options.port, username=options.username, password=options.password,
            identifier=client_id(options), will=aiomqtt.Will(self.topics.available, OFFLINE, qos=1, retain=True),
            keepalive=KEEPALIVE_S, timeout=OPERATION_TIMEOUT_S, tls_context=tls, clean_session=True,
            logger=logging.getLogger("store.notify.mqtt.client"))

    async def run(self, session: Session) -> None:
        backoff = Backoff(0.25, MAX_RECONNECT_S)
        while True:
            try:
                tls = await asyncio.to_thread(tls_context, self.options) if self.options.tls else None
                async with self.client(tls) as client:
                    self.state, self.connects = "connected", self.connects + 1
                    self.connected_since_us = time.time_ns() // 1000
                    log.info("MQTT: connected to %s", self.options.describe())
                    self._logged = None
                    backoff.reset()
                    await session(client)
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: TLS set-up, name resolution
                self._failed(describe_error(exc, self.options))
            self.connected_since_us = None
            await asyncio.sleep(backoff.next_delay())

    def _failed(self, error: str) -> None:
        was_connected = self.state == "connected"
        self.state = "failing"
        self.last_error, self.last_error_us = error, time.time_ns() // 1000
        now = time.monotonic()
        if was_connected:
            log.warning("MQTT: lost the connection to %s: %s; events queue in the outbox until it is back",
                        self.options.describe(), error)
        elif self._logged is None or self._logged[0] != error or now - self._logged[1] > REPEAT_LOG_S:
            log.error("MQTT: %s (retrying every few seconds; events queue in the outbox meanwhile)", error)
        else:
            return
        self._logged = (error, now)
