"""``sht store --mqtt URL``: the flags, and the broker they name. Only argparse and the standard library at the top:
sht/cli.py imports this when it builds its parser, and a store without ``--mqtt`` never loads the MQTT client.

``mqtt://[USER[:PASS]@]HOST[:PORT][/PREFIX]`` (port 1883) or ``mqtts://...`` (TLS, port 8883; ``--mqtt-ca FILE``
verifies the broker with that CA instead of the system's). The password may instead come from
``SHT_MQTT_PASSWORD`` (a URL on the command line is visible to every user of the machine in ``ps``). PREFIX is
the first level of every topic (default ``sht``): one or more levels without ``+``, ``#`` or empty levels.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEFAULT_PREFIX = "sht"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's default discovery prefix
PASSWORD_ENV = "SHT_MQTT_PASSWORD"
_FORM = "mqtt://[USER:PASS@]HOST[:PORT][/PREFIX] (or mqtts:// for TLS)"


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int
    prefix: str = DEFAULT_PREFIX
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # with tls: the CA that signed the broker's certificate (None: the system's)
    discovery_prefix: str | None = DEFAULT_DISCOVERY_PREFIX  # None: no Home Assistant discovery

    def describe(self) -> str:
        """The broker for logs and /health: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def check_topic_levels(text: str, what: str) -> str:
    """``text`` if it is one or more MQTT topic levels a store can publish under, else ValueError naming ``what``."""
    if not text or text.startswith("/") or text.endswith("/") or "//" in text:
        raise ValueError(f"{what} {text!r} must be one or more topic levels such as 'sht' or 'home/sht', "
                         "without a leading, trailing or doubled '/'")
    if any(c in text for c in "+#\x00"):
        raise ValueError(f"{what} {text!r} cannot contain the MQTT wildcards '+' or '#'")
    if text.startswith("$"):
        raise ValueError(f"{what} {text!r} cannot start with '$' (brokers keep those topics for themselves)")
    return text


def parse_mqtt_url(text: str, ca_file: str | None = None, discovery_prefix: str | None = DEFAULT_DISCOVERY_PREFIX,
                   environ: dict[str, str] | None = None) -> MqttOptions:
    """The broker a ``--mqtt`` URL names; ValueError saying what is wrong and the form it takes."""
    environ = dict(os.environ) if environ is None else environ
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"--mqtt {_redacted(text)!r}: give {_FORM}")
    if not parts.hostname:
        raise ValueError(f"--mqtt {_redacted(text)!r} names no broker host: give {_FORM}")
    if parts.query or parts.fragment:
        raise ValueError(f"--mqtt {_redacted(text)!r}: no '?' or '#' parts are taken: give {_FORM}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"--mqtt {_redacted(text)!r}: the port must be a number from 1 to 65535") from None
    tls = parts.scheme == "mqtts"
    prefix = unquote(parts.path.strip("/")) or DEFAULT_PREFIX
    check_topic_levels(prefix, "--mqtt's topic prefix")
    if ca_file is not None:
        if not tls:
            raise ValueError("--mqtt-ca is for a TLS broker: give an mqtts:// URL")
        if not Path(ca_file).is_file():
            raise ValueError(f"--mqtt-ca {ca_file}: no such file (the PEM CA that signed the broker's certificate)")
    if discovery_prefix is not None:
        check_topic_levels(discovery_prefix, "--mqtt-discovery")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username is not None:
        password = environ.get(PASSWORD_ENV)
    return MqttOptions(parts.hostname, port or (8883 if tls else 1883), prefix, username, password, tls, ca_file,
                       discovery_prefix)


def _redacted(text: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return text.replace(f":{parts.password}@", ":***@", 1)


def add_mqtt_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("MQTT and Home Assistant (docs/integrations.md)")
    group.add_argument("--mqtt", default=None, metavar="URL",
                       help=f"publish events and camera states to this MQTT broker and take commands from it: {_FORM}; "
                            f"default topic prefix {DEFAULT_PREFIX}; the password may come from ${PASSWORD_ENV} "
                            "instead (needs pip install 'sht-cctv[mqtt]')")
    group.add_argument("--mqtt-ca", default=None, metavar="FILE",
                       help="with an mqtts:// broker: the PEM CA file its certificate is verified with "
                            "(default: the system's CAs)")
    group.add_argument("--mqtt-discovery", default=DEFAULT_DISCOVERY_PREFIX, metavar="PREFIX",
                       help=f"Home Assistant's MQTT discovery prefix (default {DEFAULT_DISCOVERY_PREFIX}); 'off': "
                            "publish no discovery configs")


def mqtt_from_args(args: argparse.Namespace) -> MqttOptions | None:
    """The broker ``--mqtt`` names (None without it); ValueError naming the flag that is wrong."""
    url = getattr(args, "mqtt", None)
    ca_file = getattr(args, "mqtt_ca", None)
    discovery = getattr(args, "mqtt_discovery", DEFAULT_DISCOVERY_PREFIX)
    if not url:
        if ca_file is not None:
            raise ValueError("--mqtt-ca needs --mqtt mqtts://HOST[:PORT]")
        return None
    options = parse_mqtt_url(url, ca_file, None if discovery in ("off", "") else discovery)
    if importlib.util.find_spec("aiomqtt") is None:  # looked up, not imported
        raise ValueError("--mqtt needs the MQTT client: pip install 'sht-cctv[mqtt]' (aiomqtt)")
    return options
