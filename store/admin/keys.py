"""The store's signing key, the tokens it issued, and the ones revoked.

``ROOT/keys/signing.key`` (Ed25519, PEM, mode 0600) is created on first start;
``signing.pub`` beside it is what nodes verify tokens with. ``issued.jsonl``
records every token made (never the token itself), ``revoked.json`` the ids
of revoked ones; a running store and its nodes pick up revocations without
a restart.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.auth import Claims, Verifier, issue_token, public_pem
from shared.fsutil import ensure_dir, write_atomic


class SigningKeys(Protocol):
    """What a running store uses of its keys: ROOT/keys/ files (KeyStore, a store on SQLite) or the index's
    (store/admin/index_keys.py IndexKeys, stores sharing PostgreSQL)."""

    def public_key(self) -> Ed25519PublicKey: ...

    def issue(self, role: str, subject: str, ttl_s: int) -> tuple[str, Claims]: ...

    def revoked(self) -> frozenset[str]: ...

    def verifier(self) -> Verifier: ...


class KeyStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "keys"
        self.private_path = self.dir / "signing.key"
        self.public_path = self.dir / "signing.pub"
        self.revoked_path = self.dir / "revoked.json"
        self.issued_path = self.dir / "issued.jsonl"
        self._revoked_cache: tuple[float, frozenset[str]] = (-1.0, frozenset())

    def private_key(self, create: bool = True) -> Ed25519PrivateKey:
        if not self.private_path.exists():
            if not create:
                raise FileNotFoundError(f"no signing key at {self.private_path}; start the store once to create it")
            self._create()
        key = serialization.load_pem_private_key(self.private_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{self.private_path} is not an Ed25519 key")
        return key

    def _create(self) -> None:
        ensure_dir(self.dir)
        os.chmod(self.dir, 0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        # Created 0600 before any byte is written, so the key is never readable by others.
        fd = os.open(self.private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        write_atomic(self.public_path, public_pem(key.public_key()))

    def public_key(self) -> Ed25519PublicKey:
        return self.private_key().public_key()

    def issue(self, role: str, subject: str, ttl_s: int) -> tuple[str, Claims]:
        token, claims = issue_token(self.private_key(), role, subject, ttl_s)
        ensure_dir(self.dir)
        with self.issued_path.open("a") as f:
            f.write(json.dumps({**asdict(claims), "issued": int(time.time())}) + "\n")
        return token, claims

    def issued(self) -> list[dict]:
        if not self.issued_path.exists():
            return []
        return [json.loads(line) for line in self.issued_path.read_text().splitlines() if line.strip()]

    def revoke(self, token_or_id: str) -> str:
        """Revoke by token id, or by the token itself; returns the id."""
        token_id = token_or_id
        if token_or_id.count(".") == 2:  # a whole JWT: read its id (its signature need not be valid)
            import jwt

            token_id = str(jwt.decode(token_or_id, options={"verify_signature": False}).get("jti", ""))
        known = {t["token_id"] for t in self.issued()}
        if token_id not in known:
            raise KeyError(f"no token {token_id!r} was issued by this store (see `sht token list`)")
        revoked = set(self.revoked())
        revoked.add(token_id)
        write_atomic(self.revoked_path, json.dumps(sorted(revoked)).encode())
        return token_id

    def revoked(self) -> frozenset[str]:
        """Revoked ids, re-read only when the file changes (a stat per handshake)."""
        try:
            mtime = self.revoked_path.stat().st_mtime
        except FileNotFoundError:
            return frozenset()
        if mtime != self._revoked_cache[0]:
            self._revoked_cache = (mtime, frozenset(json.loads(self.revoked_path.read_text())))
        return self._revoked_cache[1]

    def verifier(self) -> Verifier:
        return Verifier(self.public_key(), self.revoked)
