"""Tokens for stores sharing a PostgreSQL index: the signing key, the tokens made and the revoked ones live in the
index (``signing_keys``, ``issued_tokens``, ``revoked_tokens`` in schema.sql), so every store of the cluster signs
and verifies with one key and refuses the same revoked tokens. A store on SQLite keeps using ROOT/keys/ files
(store/admin/keys.py); nothing here runs for it.

- **The key pair** is made by whoever first finds the index without one (a store starting, or ``sht token create
  --index``): ``INSERT … ON CONFLICT DO NOTHING``, then the row that won is read back, so stores starting at once
  agree on one key. A store whose root has never been on an index before and already has a key in ROOT/keys/ (it
  ran on SQLite, or its key files were copied as docs/cluster.md used to say) brings that key instead, with its
  issued and revoked lists, when it is the first: the tokens its nodes hold stay valid, revoked ones stay revoked.
  Once on the index, ROOT/keys/in-index says so: ``sht token … --root`` then refuses (its tokens would be refused
  by the stores) and the store never brings a key in again (so deleting the row makes a new key, docs/security.md).
- **Whoever can read the index can read the private key** and make tokens of any role: guard the database's
  credentials as the key itself (docs/security.md). Or keep it out of the index: ``--key-file FILE`` (the same
  file given to every store and to ``sht token create``) signs with the key in FILE, and only its public key is in
  the index; a store started without it, or with another key, is refused. An index that held the private key has
  it removed by the first store started with a key file holding the same key.
- **Revocations** are read again by every store every ``REVOKED_POLL_S`` (1 s) into the set its handshakes check;
  the store's control links then tell its nodes and close what those tokens have open. The index out of reach:
  the last set read stays in force (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.auth import Claims, Verifier, issue_token, public_pem
from shared.clock import now_us
from shared.fsutil import ensure_dir, write_atomic
from store.admin.keys import KeyStore
from store.index.db import transaction

log = logging.getLogger(__name__)

KEY_NAME = "store"
REVOKED_POLL_S = 1.0  # a token revoked anywhere is refused by every store within about this long
IN_INDEX_MARK = "in-index"  # ROOT/keys/in-index: this root's store keeps its tokens in its index


class IndexKeys:
    """The cluster's key, issued and revoked tokens, on an index connection (``Index.conn``)."""

    def __init__(self, conn: aiosqlite.Connection, where: str = "the index") -> None:
        """``where``: the index for messages (its URL without the password)."""
        self.conn = conn
        self.where = where
        self._private: Ed25519PrivateKey | None = None
        self._revoked: frozenset[str] = frozenset()
        self._unrecorded: list[tuple[Claims, int]] = []  # made in the store (its relay's tokens): written next poll
        self._poll: asyncio.Task[None] | None = None
        self._poll_failing = False

    # ---- the key ----

    async def load(self, root: Path | None = None, key_file: Path | None = None) -> None:
        """Read the cluster's key, making it (or bringing ROOT/keys/' in, see the module) if the index has none.
        ``root``: a store's root; it is marked as keeping its tokens in the index. ``key_file``: the private key
        comes from this file (``--key-file``), and only its public key goes into the index (KeyFileError when it
        is not the cluster's key)."""
        own = read_key_file(key_file) if key_file is not None else None
        seed = _seed_from(root) if root is not None and own is None else None
        row = await self._read_key()
        if row is None:
            if own is not None:
                await self._insert_key(own, "key file", None, keep_private=False)
            elif seed is not None:
                await self._insert_key(seed.private_key(create=False), str(seed.dir), seed, keep_private=True)
            else:
                await self._insert_key(Ed25519PrivateKey.generate(), "generated", None, keep_private=True)
            row = await self._read_key()
            assert row is not None, "the signing key row vanished right after it was written"
        private_pem, public, origin = row
        if own is not None:
            await self._check_key_file(own, key_file, public, origin, private_pem is not None)
            key = own
        elif private_pem is None:
            raise KeyFileError(f"the stores on {self.where} sign with a key file (only its public key is in the "
                               "index): give the same --key-file FILE")
        else:
            loaded = serialization.load_pem_private_key(private_pem.encode(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"the signing key in {self.where} is not an Ed25519 key")
            key = loaded
        self._private = key
        if root is not None:
            await asyncio.to_thread(self._mark, root, key, origin)
        await self.refresh()

    async def _read_key(self) -> tuple[str | None, str, str] | None:
        """(private PEM or None with a key file, public PEM, origin)."""
        async with self.conn.execute("SELECT private_pem, public_pem, origin FROM signing_keys WHERE name = ?",
                                     (KEY_NAME,)) as cur:
            row = await cur.fetchone()
        return None if row is None else (None if row[0] is None else str(row[0]), str(row[1]), str(row[2]))

    async def _insert_key(self, key: Ed25519PrivateKey, origin: str, seed: KeyStore | None,
                          keep_private: bool) -> None:
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode() if keep_private else None
        async with transaction(self.conn) as conn:
            cur = await conn.execute(
                "INSERT INTO signing_keys (name, private_pem, public_pem, created_us, origin) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (KEY_NAME, pem, public_pem(key.public_key()).decode(), now_us(), origin))
            if cur.rowcount != 1 or seed is None:
                return  # another store made it first: its key is the cluster's
            # The key brought in keeps its meaning: what it signed is listed, what was revoked stays revoked.
            await self._record(conn, [(_claims(t), int(t.get("issued", 0))) for t in seed.issued()])
            await conn.executemany("INSERT INTO revoked_tokens (token_id, revoked_us) VALUES (?, ?) "
                                   "ON CONFLICT (token_id) DO NOTHING", [(t, now_us()) for t in sorted(seed.revoked())])
        log.info("the index's signing key is now the one from %s, with its %d issued and %d revoked tokens",
                 seed.dir, len(seed.issued()), len(seed.revoked()))

    async def _check_key_file(self, key: Ed25519PrivateKey, path: Path | None, public: str, origin: str,
                              private_in_index: bool) -> None:
        if public_pem(key.public_key()).decode() != public:
            raise KeyFileError(f"--key-file {path} is not the signing key of the stores on {self.where} (its public "
                               f"key differs from the index's, {origin}): give every store and `sht token create` "
                               "the same key file")
        if private_in_index:  # the same key, now kept in files: take it out of the index
            async with transaction(self.conn) as conn:
                await conn.execute("UPDATE signing_keys SET private_pem = NULL, origin = 'key file' WHERE name = ?",
                                   (KEY_NAME,))
            log.warning("removed the private signing key from %s: the stores read it from a key file now, so each "
                        "must be started with --key-file (and `sht token create` given it)", self.where)

    def _mark(self, root: Path, key: Ed25519PrivateKey, origin: str) -> None:
        """ROOT/keys/in-index, and a warning when ROOT/keys/ holds another key than the cluster's."""
        files = KeyStore(root)
        mark = files.dir / IN_INDEX_MARK
        if files.private_path.exists() and origin != str(files.dir):
            try:
                own = files.private_key(create=False).public_key()
            except (OSError, ValueError):
                own = None
            if own is None or public_pem(own) != public_pem(key.public_key()):
                log.warning("%s holds another signing key than the cluster's (in %s): tokens made with "
                            "`sht token create --root %s` are refused; make them with --index", files.dir,
                            self.where, root)
        if not mark.exists():
            ensure_dir(files.dir)
            files.dir.chmod(0o700)
            write_atomic(mark, (f"This store keeps its signing key, issued and revoked tokens in its index, "
                                f"{self.where}: use `sht token create|list|revoke --index URL`.\n").encode())

    def private_key(self) -> Ed25519PrivateKey:
        if self._private is None:
            raise RuntimeError("IndexKeys.load() first")
        return self._private

    def public_key(self) -> Ed25519PublicKey:
        return self.private_key().public_key()

    def verifier(self) -> Verifier:
        return Verifier(self.public_key(), self.revoked)

    # ---- tokens ----

    def issue(self, role: str, subject: str, ttl_s: int) -> tuple[str, Claims]:
        """A token signed now; its record reaches the index with the next poll (the store's own relay tokens)."""
        token, claims = issue_token(self.private_key(), role, subject, ttl_s)
        self._unrecorded.append((claims, int(time.time())))
        return token, claims

    async def issue_recorded(self, role: str, subject: str, ttl_s: int) -> tuple[str, Claims]:
        """A token, recorded in the index before it is returned (``sht token create --index``)."""
        token, claims = issue_token(self.private_key(), role, subject, ttl_s)
        async with transaction(self.conn) as conn:
            await self._record(conn, [(claims, int(time.time()))])
        return token, claims

    @staticmethod
    async def _record(conn: aiosqlite.Connection, made: Sequence[tuple[Claims, int]]) -> None:
        await conn.executemany(
            "INSERT INTO issued_tokens (token_id, role, subject, expires, issued) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (token_id) DO NOTHING",
            [(c.token_id, c.role, c.subject, c.expires, issued) for c, issued in made])

    async def issued(self) -> list[dict[str, Any]]:
        """As KeyStore.issued: subject, role, expires, token_id, issued; oldest first."""
        async with self.conn.execute("SELECT subject, role, expires, token_id, issued FROM issued_tokens "
                                     "ORDER BY issued, token_id") as cur:
            rows = await cur.fetchall()
        return [{"subject": s, "role": r, "expires": int(e), "token_id": t, "issued": int(i)}
                for s, r, e, t, i in rows]

    async def revoke(self, token_or_id: str) -> str:
        """Revoke by token id, or by the token itself; returns the id. KeyError if the index never issued it."""
        token_id = _token_id(token_or_id)
        async with self.conn.execute("SELECT 1 FROM issued_tokens WHERE token_id = ?", (token_id,)) as cur:
            if await cur.fetchone() is None:
                raise KeyError(f"no token {token_id!r} was issued for the stores on {self.where} "
                               "(see `sht token list --index URL`)")
        async with transaction(self.conn) as conn:
            await conn.execute("INSERT INTO revoked_tokens (token_id, revoked_us) VALUES (?, ?) "
                               "ON CONFLICT (token_id) DO NOTHING", (token_id, now_us()))
        await self.refresh()
        return token_id

    def revoked(self) -> frozenset[str]:
        """The revoked ids as last read (every REVOKED_POLL_S while started): what each handshake checks."""
        return self._revoked

    async def refresh(self) -> frozenset[str]:
        async with self.conn.execute("SELECT token_id FROM revoked_tokens") as cur:
            self._revoked = frozenset(str(row[0]) for row in await cur.fetchall())
        return self._revoked

    # ---- in a running store ----

    def start(self) -> None:
        self._poll = asyncio.create_task(self._poll_loop(), name="revoked-tokens")

    async def stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
            self._poll = None
        with contextlib.suppress(Exception):  # the index away at stop: those relay tokens go unlisted
            await self._write_unrecorded()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(REVOKED_POLL_S)
            try:
                await self._write_unrecorded()
                await self.refresh()
            except Exception as exc:  # IndexUnavailable (PostgreSQL away), or anything else: keep the last set
                if not self._poll_failing:
                    log.warning("cannot read the revoked tokens from %s (%s); the %d known stay refused, trying "
                                "again every %.0f s", self.where, exc, len(self._revoked), REVOKED_POLL_S)
                self._poll_failing = True
            else:
                if self._poll_failing:
                    log.info("reading the revoked tokens from %s again", self.where)
                self._poll_failing = False

    async def _write_unrecorded(self) -> None:
        if not self._unrecorded:
            return
        made, self._unrecorded = self._unrecorded, []
        try:
            async with transaction(self.conn) as conn:
                await self._record(conn, made)
        except BaseException:
            self._unrecorded = made + self._unrecorded
            raise


class KeyFileError(OSError):
    """The signing key's file is missing, unreadable, not an Ed25519 key, or not the cluster's; or the cluster
    uses one and none was given. One line for the operator."""


def read_key_file(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (unencrypted PEM, e.g. from ``openssl genpkey -algorithm ed25519``)."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"--key-file {path}: {exc.strerror or exc}") from None
    make = "make one with `openssl genpkey -algorithm ed25519 -out FILE`"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"--key-file {path} is not an unencrypted PEM private key ({exc}); {make}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"--key-file {path} is a {type(key).__name__}, not an Ed25519 key; {make}")
    if mode & 0o077:
        log.warning("%s can be read by other users of this machine (mode %o): chmod 600 it; whoever reads it can "
                    "make tokens of any role", path, mode & 0o777)
    return key


def _seed_from(root: Path) -> KeyStore | None:
    """ROOT/keys/ when its key should be brought into an index that has none: only on the root's first time on
    an index (once marked, a missing row means the operator deleted it to make a new key)."""
    files = KeyStore(root)
    if (files.dir / IN_INDEX_MARK).exists() or not files.private_path.exists():
        return None
    return files


def _claims(record: dict[str, Any]) -> Claims:
    return Claims(str(record["subject"]), str(record["role"]), int(record["expires"]), str(record["token_id"]))


def _token_id(token_or_id: str) -> str:
    if token_or_id.count(".") == 2:  # a whole JWT: read its id (its signature need not be valid)
        import jwt

        return str(jwt.decode(token_or_id, options={"verify_signature": False}).get("jti", ""))
    return token_or_id


def marked_in_index(root: Path) -> str | None:
    """What ROOT/keys/in-index says (this root's store keeps its tokens in its index), or None."""
    mark = KeyStore(root).dir / IN_INDEX_MARK
    try:
        return mark.read_text().strip()
    except FileNotFoundError:
        return None
