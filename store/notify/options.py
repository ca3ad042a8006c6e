"""``sht store --webhook URL`` (and ``--mqtt``, store/notify/mqtt/options.py): the flags and the options they
make. Only argparse and the standard library: sht/cli.py imports this when it builds its parser."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_QUEUED = 10_000  # store/notify/outbox.py DEFAULT_MAX_ITEMS


@dataclass(frozen=True)
class NotifyOptions:
    webhooks: tuple[str, ...] = ()  # sht store --webhook URL ...
    mqtt: Any = None  # store.notify.mqtt.options.MqttOptions (sht store --mqtt); None: no MQTT
    max_queued: int = DEFAULT_MAX_QUEUED  # per outbox target


def add_webhook_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--webhook", action="append", default=[], metavar="URL",
                   help="POST alerts (signed JSON) to this URL; repeatable; also the store-wide setting webhooks "
                        "(docs/integrations.md)")


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
    return NotifyOptions(tuple(hooks), mqtt)
