"""``sht store --webhook URL`` (and ``--mqtt``, store/notify/mqtt/options.py): the flags and the options they
make. Only argparse and the standard library: sht/cli.py imports this when it builds its parser."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_MAX_QUEUED = 10_000  # store/notify/outbox.py DEFAULT_MAX_ITEMS


@dataclass(frozen=True)
class NotifyOptions:
    webhooks: tuple[str, ...] = ()  # sht store --webhook URL ...
    mqtt: Any = None  # store.notify.mqtt.options.MqttOptions (sht store --mqtt); None: no MQTT
    max_queued: int = DEFAULT_MAX_QUEUED  # per outbox target
    public_url: str = ""  # sht store --public-url: where receivers reach this store ("": snapshots as paths)


def add_webhook_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--webhook", action="append", default=[], metavar="URL",
                   help="POST alerts (signed JSON) to this URL; repeatable; also the store-wide setting webhooks "
                        "(docs/integrations.md)")
    p.add_argument("--public-url", metavar="URL", default="",
                   help="where webhook and MQTT receivers reach this store, e.g. https://nas.example:8100: an "
                        "event's snapshot is then a full URL (default: a path on the store, /snapshots/ID.jpg)")


def notify_from_args(args: argparse.Namespace) -> NotifyOptions:
    """``--webhook`` (and ``--mqtt``): ValueError naming a bad one."""
    from shared.webhooks import check_url

    hooks = []
    for url in getattr(args, "webhook", None) or []:
        try:
            hooks.append(check_url(url))
        except ValueError as exc:
            raise ValueError(f"--webhook: {exc}") from None
    from store.notify.mqtt.options import mqtt_from_args  # argparse and the standard library only

    mqtt = mqtt_from_args(args)
    return NotifyOptions(tuple(hooks), mqtt, public_url=public_url(getattr(args, "public_url", "") or ""))


def public_url(text: str) -> str:
    """``--public-url``'s value without a trailing ``/`` ("" stays ""); ValueError unless http(s)://HOST[:PORT][/PATH]
    with no query or fragment."""
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"--public-url: {text!r} is not an http:// or https:// URL of this store (e.g. "
                         "https://nas.example:8100)")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"--public-url: {text!r} has a port that is not a number from 0 to 65535") from None
    return text.rstrip("/")
