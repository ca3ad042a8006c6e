"""The store's public key on the node, so viewers' tokens are verified offline.

From ``--store-key FILE``, else from the copy cached in the spool, else fetched
from the store's ``GET /key`` (retried in the background until it arrives).
Revoked token ids arrive over the control link.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.auth import Verifier, load_public_key
from shared.backoff import Backoff
from shared.fsutil import write_atomic
from shared.store_key import fetch_store_key

log = logging.getLogger(__name__)


class StoreKeyring:
    def __init__(self, store_url: str | None, key_file: str | None, cache: Path,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.store_url, self.key_file, self.cache, self.ssl_context = store_url, key_file, cache, ssl_context
        self.revoked: frozenset[str] = frozenset()
        self.verifier: Verifier | None = None

    @property
    def revoked_path(self) -> Path:
        return self.cache.with_name("revoked.json")

    def remember_revoked(self, token_ids: frozenset[str]) -> None:
        """Kept in the spool too: after a restart with the store away, revoked tokens stay refused."""
        self.revoked = token_ids
        try:
            write_atomic(self.revoked_path, json.dumps(sorted(token_ids)).encode())
        except OSError as exc:
            log.warning("could not save the revoked token list: %s", exc)

    def load_local(self) -> bool:
        try:
            self.revoked = frozenset(json.loads(self.revoked_path.read_text()))
        except (OSError, ValueError, TypeError):
            pass
        for path in (Path(self.key_file) if self.key_file else None, self.cache):
            if path is not None and path.exists():
                self._use(load_public_key(path.read_bytes()), str(path))
                return True
        if self.key_file:
            raise FileNotFoundError(f"--store-key {self.key_file} does not exist")
        return False

    def _use(self, public_key: Ed25519PublicKey, where: str) -> None:
        self.verifier = Verifier(public_key, lambda: self.revoked)
        log.info("verifying viewer tokens with the store's key from %s", where)

    async def fetch_until_found(self) -> None:
        if self.store_url is None:
            log.error("no store and no --store-key: this node cannot verify tokens; viewers are refused")
            return
        pem, public_key = await fetch_store_key(self.store_url, self.ssl_context, Backoff(1.0, 30.0),
                                                "viewers are refused until it arrives")
        try:
            await asyncio.to_thread(write_atomic, self.cache, pem)
        except OSError as exc:  # the key still works; it is fetched again after a restart
            log.warning("could not cache the store's key in %s: %s", self.cache, exc)
        self._use(public_key, f"GET /key of {self.store_url}")
