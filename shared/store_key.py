"""Fetching the store's public key (``GET /key``) until it arrives: the node and ``sht relay`` verify tokens with it."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from urllib.request import urlopen

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.auth import load_public_key
from shared.backoff import Backoff
from shared.store_list import is_tls, parse_store_list
from shared.urls import http_url

log = logging.getLogger(__name__)


async def fetch_store_key(store_url: str | Sequence[str], ssl_context: ssl.SSLContext | None, backoff: Backoff,
                          meanwhile: str = "") -> tuple[bytes, Ed25519PublicKey]:
    """The PEM and the key, retried with ``backoff`` for as long as it takes (cancel to give up).

    ``store_url``: one store, or several (a ``--store`` list or its items): each is asked in turn, and the
    backoff applies once all have failed. Stores that share a list must share their key (docs/cluster.md).
    ``meanwhile`` says in each retry's warning what waits for the key, e.g. "viewers are refused until it arrives".
    """
    stores = parse_store_list(store_url) if isinstance(store_url, str) else tuple(store_url)
    while True:
        failures = []
        for store in stores:
            url = http_url(store) + "/key"
            try:
                pem = await asyncio.to_thread(_get, url, ssl_context if is_tls(store) else None)
                return pem, load_public_key(pem)
            except (OSError, ValueError) as exc:
                failures.append(f"{url} ({exc})")
        delay = backoff.next_delay()
        log.warning("cannot get the store's key from %s; %sretrying in %.1f s", "; nor from ".join(failures),
                    f"{meanwhile}; " if meanwhile else "", delay)
        await asyncio.sleep(delay)


def _get(url: str, ssl_context: ssl.SSLContext | None) -> bytes:
    with urlopen(url, timeout=5, context=ssl_context) as reply:  # noqa: S310 - the configured store
        return bytes(reply.read())
