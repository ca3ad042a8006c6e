"""Tokens for stores sharing a PostgreSQL index (store/admin/index_keys.py), on a real PostgreSQL: one key for all
(made once even when stores start together), a root's own key brought in with its revocations, revocations read by
every store within the poll, the index away, and ``sht token … --index`` from the command line."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import AuthError, public_pem
from shared.security import SecurityOptions
from store.admin.index_keys import IN_INDEX_MARK, REVOKED_POLL_S, IndexKeys, KeyFileError
from store.admin.keys import KeyStore
from store.app import Store
from store.index.db import Index
from store.index.postgres import POOL_WAIT_S
from tests.store.index_backends import committed_rows
from tests.store.postgres import PostgresCluster, running_postgres


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """This module stops and starts its cluster: one of its own, not the run's shared one (tests/servers.py)."""
    with running_postgres() as cluster:
        yield cluster


async def opened(url: str, count: int) -> list[Index]:
    return [await Index.open(url) for _ in range(count)]


async def close_all(indexes: list[Index]) -> None:
    for index in indexes:
        await index.close()


async def test_stores_starting_together_make_one_key_and_all_use_it(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    indexes = await opened(url, 4)
    try:
        keys = [IndexKeys(index.conn) for index in indexes]
        await asyncio.gather(*(k.load() for k in keys))
        assert len({public_pem(k.public_key()) for k in keys}) == 1
        assert committed_rows(url, "SELECT name, origin FROM signing_keys") == [("store", "generated")]
        token, claims = await keys[0].issue_recorded("viewer", "tablet", 600)
        for k in keys:  # made by one, accepted by every other
            assert k.verifier().verify(token).subject == "tablet"
        assert [t["token_id"] for t in await keys[3].issued()] == [claims.token_id]
    finally:
        await close_all(indexes)


async def test_a_revocation_made_anywhere_is_refused_everywhere_within_the_poll(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    indexes = await opened(url, 2)
    a, b = IndexKeys(indexes[0].conn), IndexKeys(indexes[1].conn)
    try:
        await a.load()
        await b.load()
        b.start()  # a running store polls; a is the CLI
        victim, claims = await a.issue_recorded("viewer", "lost-phone", 600)
        other, _ = await a.issue_recorded("viewer", "kept", 600)
        assert b.verifier().verify(victim).token_id == claims.token_id
        assert await a.revoke(victim) == claims.token_id  # by the token itself
        revoked_at = time.monotonic()
        while True:
            try:
                b.verifier().verify(victim)
            except AuthError as exc:
                assert "revoked" in exc.reason
                break
            assert time.monotonic() - revoked_at < 3 * REVOKED_POLL_S, "b never refused the revoked token"
            await asyncio.sleep(0.05)
        assert b.verifier().verify(other).subject == "kept"
        with pytest.raises(KeyError, match="no token 'deadbeef' was issued"):
            await a.revoke("deadbeef")
        # The store's own tokens (its relay's), made without waiting on the index, are listed after a poll.
        _, own = b.issue("viewer", "store-relay", 3600)
        deadline = time.monotonic() + 3 * REVOKED_POLL_S
        while own.token_id not in {t["token_id"] for t in await a.issued()}:
            assert time.monotonic() < deadline, "the store's own token never reached the index"
            await asyncio.sleep(0.05)
    finally:
        await b.stop()
        await close_all(indexes)


async def test_with_the_index_away_the_known_revocations_stay_in_force(postgres: PostgresCluster,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    url = postgres.create_database()
    [index] = await opened(url, 1)
    keys = IndexKeys(index.conn, "the test index")
    try:
        await keys.load()
        victim, claims = await keys.issue_recorded("viewer", "x", 600)
        await keys.revoke(claims.token_id)
        keys.start()
        postgres.stop("immediate")
        try:
            # A read waits for a pooled connection (POOL_WAIT_S, 5 s) before it fails.
            deadline = time.monotonic() + POOL_WAIT_S + 5 * REVOKED_POLL_S
            while "cannot read the revoked tokens from the test index" not in caplog.text:
                assert time.monotonic() < deadline, "the failing poll was never logged"
                await asyncio.sleep(0.1)
            assert keys.revoked() == {claims.token_id}
            with pytest.raises(AuthError, match="revoked"):
                keys.verifier().verify(victim)
        finally:
            postgres.start()
    finally:
        await keys.stop()
        await index.close()


async def test_a_root_with_its_own_key_brings_it_and_its_revocations_to_an_empty_index(
        tmp_path: Path, postgres: PostgresCluster, caplog: pytest.LogCaptureFixture) -> None:
    url = postgres.create_database()
    first, second = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    kept, _ = first.issue("node", "node0", 600)  # tokens the nodes of a store on SQLite hold
    revoked, claims = first.issue("viewer", "gone", 600)
    first.revoke(revoked)
    second.issue("viewer", "b", 600)  # another key: not the cluster's
    indexes = await opened(url, 2)
    try:
        a, b = IndexKeys(indexes[0].conn, "idx"), IndexKeys(indexes[1].conn, "idx")
        await a.load(tmp_path / "a")
        with caplog.at_level(logging.WARNING):
            await b.load(tmp_path / "b")
        assert public_pem(b.public_key()) == public_pem(first.public_key())
        assert b.verifier().verify(kept).subject == "node0"
        with pytest.raises(AuthError, match="revoked"):
            b.verifier().verify(revoked)
        assert {t["subject"] for t in await b.issued()} == {"node0", "gone"}
        assert f"{second.dir} holds another signing key than the cluster's" in caplog.text
        for root in ("a", "b"):
            assert "--index" in (tmp_path / root / "keys" / IN_INDEX_MARK).read_text()
        assert claims.token_id in committed_rows(url, "SELECT token_id FROM revoked_tokens")[0]
    finally:
        await close_all(indexes)


async def test_a_root_already_on_the_index_never_brings_its_key_again(tmp_path: Path,
                                                                      postgres: PostgresCluster) -> None:
    """So that deleting the key row (a leaked key, docs/security.md) makes a new key, not the old one again."""
    url = postgres.create_database()
    files = KeyStore(tmp_path)
    files.issue("viewer", "v", 600)
    [index] = await opened(url, 1)
    try:
        keys = IndexKeys(index.conn)
        await keys.load(tmp_path)
        assert public_pem(keys.public_key()) == public_pem(files.public_key())
        await index.conn.execute("DELETE FROM signing_keys")
        await index.conn.commit()
        again = IndexKeys(index.conn)
        await again.load(tmp_path)
        assert public_pem(again.public_key()) != public_pem(files.public_key())
        assert committed_rows(url, "SELECT origin FROM signing_keys") == [("generated",)]
    finally:
        await index.close()


async def test_a_store_on_sqlite_keeps_its_key_files_and_leaves_the_index_tables_empty(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(mode=0o700)
    (tmp_path / "keys" / IN_INDEX_MARK).write_text("left from a time on PostgreSQL")
    store = Store(tmp_path)
    await store.start("127.0.0.1", 0)
    try:
        assert store.index_keys is None and (tmp_path / "keys" / "signing.key").is_file()
        assert not (tmp_path / "keys" / IN_INDEX_MARK).exists()  # `sht token --root` is right for it again
        for table in ("signing_keys", "issued_tokens", "revoked_tokens"):
            assert committed_rows(f"sqlite:{tmp_path / 'index.sqlite3'}", f"SELECT COUNT(*) FROM {table}") == [(0,)]
    finally:
        await store.stop()


def key_file(path: Path, key: Ed25519PrivateKey | None = None, mode: int = 0o600) -> Path:
    """An Ed25519 key as `openssl genpkey -algorithm ed25519` writes it (PKCS#8 PEM)."""
    path.write_bytes((key or Ed25519PrivateKey.generate()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(mode)
    return path


async def test_with_a_key_file_only_the_public_key_is_in_the_index(tmp_path: Path, postgres: PostgresCluster,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    url = postgres.create_database()
    shared = key_file(tmp_path / "signing.key")
    indexes = await opened(url, 3)
    try:
        a, b, without = (IndexKeys(index.conn, "idx") for index in indexes)
        await asyncio.gather(a.load(tmp_path / "a", shared), b.load(tmp_path / "b", shared))
        rows = committed_rows(url, "SELECT private_pem, public_pem, origin FROM signing_keys")
        assert rows == [(None, public_pem(a.public_key()).decode(), "key file")]
        token, _ = await a.issue_recorded("admin", "alice", 600)
        assert b.verifier().verify(token).subject == "alice"
        with pytest.raises(KeyFileError, match="sign with a key file .* give the same --key-file"):
            await without.load(tmp_path / "c")
        with pytest.raises(KeyFileError, match="is not the signing key of the stores on idx"):
            await without.load(tmp_path / "c", key_file(tmp_path / "other.key"))
        (tmp_path / "garbage.key").write_text("not a key")
        with pytest.raises(KeyFileError, match="garbage.key is not an unencrypted PEM private key"):
            await without.load(key_file=tmp_path / "garbage.key")
        with pytest.raises(KeyFileError, match="missing.key: No such file"):
            await without.load(key_file=tmp_path / "missing.key")
        with caplog.at_level(logging.WARNING):
            await without.load(key_file=key_file(tmp_path / "loose.key", a.private_key(), mode=0o644))
        assert "loose.key can be read by other users of this machine (mode 644): chmod 600 it" in caplog.text
    finally:
        await close_all(indexes)


async def test_a_key_file_holding_the_index_key_takes_it_out_of_the_index(tmp_path: Path,
                                                                          postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    [index] = await opened(url, 1)
    try:
        in_index = IndexKeys(index.conn)
        await in_index.load()
        token, _ = await in_index.issue_recorded("viewer", "v", 600)
        moved = IndexKeys(index.conn)
        await moved.load(key_file=key_file(tmp_path / "signing.key", in_index.private_key()))
        assert committed_rows(url, "SELECT private_pem IS NULL, origin FROM signing_keys") == [(True, "key file")]
        assert moved.verifier().verify(token).subject == "v"  # the same key: every token stays valid
    finally:
        await index.close()


async def test_a_store_on_sqlite_refuses_a_key_file(tmp_path: Path) -> None:
    store = Store(tmp_path, security=SecurityOptions(key_file=str(key_file(tmp_path / "signing.key"))))
    with pytest.raises(KeyFileError, match="--key-file is for stores sharing a PostgreSQL index"):
        await store.start("127.0.0.1", 0)


def sht(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sht", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


def test_sht_token_create_list_and_revoke_with_index(tmp_path: Path, postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    made = sht("token", "create", "--index", url, "--role", "viewer", "--subject", "tablet", "--ttl", "1d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()

    async def verify() -> str:
        [index] = await opened(url, 1)
        try:
            keys = IndexKeys(index.conn)
            await keys.load()
            return keys.verifier().verify(token).subject
        finally:
            await index.close()

    assert asyncio.run(verify()) == "tablet"
    token_id = made.stderr.split(" id ")[1].split(",")[0]
    listed = sht("token", "list", "--index", url)
    assert listed.returncode == 0 and token_id in listed.stdout and "valid" in listed.stdout, listed
    done = sht("token", "revoke", "--index", url, token_id)
    assert done.returncode == 0 and f"revoked {token_id}; every store on this index refuses it" in done.stdout
    assert "revoked" in sht("token", "list", "--index", url).stdout
    with pytest.raises(AuthError, match="revoked"):
        asyncio.run(verify())
    done = sht("token", "revoke", "--index", url, "deadbeef")
    assert done.returncode == 2 and "no token 'deadbeef' was issued for the stores on" in done.stderr


def test_sht_token_create_with_a_key_file(tmp_path: Path, postgres: PostgresCluster) -> None:
    url, signing = postgres.create_database(), key_file(tmp_path / "signing.key")
    made = sht("token", "create", "--index", url, "--key-file", str(signing), "--role", "node", "--subject", "n1")
    assert made.returncode == 0, made.stderr
    assert committed_rows(url, "SELECT private_pem IS NULL FROM signing_keys") == [(True,)]
    done = sht("token", "create", "--index", url, "--role", "viewer")
    assert done.returncode == 2 and "give the same --key-file FILE" in done.stderr, done.stderr
    assert "n1" in sht("token", "list", "--index", url).stdout  # listing and revoking need no key


def test_sht_token_refuses_what_would_make_tokens_no_store_accepts(tmp_path: Path,
                                                                   postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    done = sht("token", "create", "--index", f"sqlite:{tmp_path / 'index.sqlite3'}", "--role", "viewer")
    assert done.returncode == 2 and "keeps its tokens in ROOT/keys/: use --root" in done.stderr
    done = sht("token", "create", "--root", str(tmp_path), "--index", url, "--role", "viewer")
    assert done.returncode == 2 and "not both" in done.stderr
    # A root whose store went onto the index: a token from its old key files would be refused by every store.
    asyncio.run(_load_with_root(url, tmp_path))
    for command in (("create", "--role", "viewer"), ("list",), ("revoke", "deadbeef")):
        done = sht("token", command[0], "--root", str(tmp_path), *command[1:])
        assert done.returncode == 2 and "use `sht token create|list|revoke --index URL`" in done.stderr, done
    assert not (tmp_path / "keys" / "signing.key").exists()
    done = sht("token", "create", "--root", str(tmp_path / "elsewhere"), "--key-file", str(tmp_path / "k"),
               "--role", "viewer")
    assert done.returncode == 2 and "--key-file is for stores sharing a PostgreSQL index" in done.stderr
    with_password = "postgresql://sht:s3cret@127.0.0.1:1/cctv"  # nothing listens on port 1
    done = sht("token", "create", "--index", with_password, "--role", "viewer")
    assert done.returncode == 2 and "postgresql://sht:***@127.0.0.1:1/cctv" in done.stderr
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr


async def _load_with_root(url: str, root: Path) -> None:
    [index] = await opened(url, 1)
    try:
        await IndexKeys(index.conn, url).load(root)
    finally:
        await index.close()
