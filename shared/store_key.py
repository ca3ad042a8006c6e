"""Fetching the store's public key (``GET /key``) until it arrives: the node and ``sht relay`` verify tokens with it."""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.request import urlopen

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.auth import load_public_key
from shared.backoff import Backoff
from shared.urls import http_url

log = logging.getLogger(__name__)


async def fetch_store_key(store_url: str, ssl_context: ssl.SSLContext | None, backoff: Backoff,
                          meanwhile: str = "") -> tuple[bytes, Ed25519PublicKey]:
    """The PEM and the key, retried with ``backoff`` for as long as it takes (cancel to give up).

    ``meanwhile`` says in each retry's warning what waits for the key, e.g. "viewers are refused until it arrives".
    """
    url = http_url(store_url) + "/key"
    while True:
        try:
            pem = await asyncio.to_thread(_get, url, ssl_context)
            return pem, load_public_key(pem)
        except (OSError, ValueError) as exc:
            delay = backoff.next_delay()
            log.warning("cannot get the store's key from %s (%s); %sretrying in %.1f s", url, exc,
                        f"{meanwhile}; " if meanwhile else "", delay)
            await asyncio.sleep(delay)


def _get(url: str, ssl_context: ssl.SSLContext | None) -> bytes:
    with urlopen(url, timeout=5, context=ssl_context) as reply:  # noqa: S310 - the configured store
        return bytes(reply.read())
