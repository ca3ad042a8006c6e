"""``sht token create|revoke|list``: tokens signed by the store's key.

A store alone on SQLite keeps its key in ROOT/keys/ (``--root``, run on the store's machine); stores sharing a
PostgreSQL index keep it in the index (``--index postgresql://...``, run anywhere that reaches the database; no
store need be running): store/admin/index_keys.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from shared.auth import ROLES

DEFAULT_ROOT = "./sht-data"
T = TypeVar("T")


def _add_where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help=f"the store's root, for a store on SQLite (default {DEFAULT_ROOT})")
    p.add_argument("--index", default=None, metavar="URL",
                   help="postgresql://USER[:PASS]@HOST[:PORT]/DB: the index of stores sharing it, whose tokens "
                        "every one of them accepts (docs/cluster.md); instead of --root")


def add_key_file_flag(p: argparse.ArgumentParser) -> None:
    """``--key-file``, for ``sht store`` and ``sht token create``: the cluster's key kept out of its index."""
    p.add_argument("--key-file", default=None, metavar="FILE",
                   help="with --index postgresql://...: sign with the Ed25519 key in FILE (e.g. from `openssl "
                        "genpkey -algorithm ed25519 -out FILE`, mode 0600) instead of a key kept in the index; give "
                        "every store and `sht token create` the same file (docs/security.md)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="make, revoke or list access tokens (where the store's root is, or with "
                                         "--index for stores sharing PostgreSQL)")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="print a new token")
    _add_where(create)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--subject", help="who or what it is for (default: the role)")
    create.add_argument("--ttl", default="30d", help="lifetime, e.g. 12h, 30d, 52w (default 30d)")
    add_key_file_flag(create)
    create.set_defaults(func=_create)
    revoke = tsub.add_parser("revoke", help="revoke a token (by its id or the token itself)")
    _add_where(revoke)
    revoke.add_argument("token", help="token id (see `sht token list`) or the token")
    revoke.set_defaults(func=_revoke)
    listing = tsub.add_parser("list", help="tokens this store (or these stores) issued")
    _add_where(listing)
    listing.set_defaults(func=_list)


class _Refused(Exception):
    """What was wrong with the command, for one line on stderr."""


def _fail(message: str) -> int:
    print(f"sht: error: {message}", file=sys.stderr)
    return 2


def _index_url(args: argparse.Namespace) -> str | None:
    """The PostgreSQL index ``--index`` names, or None for ROOT/keys/ files; _Refused for a wrong combination."""
    from store.admin.index_keys import marked_in_index
    from store.index.location import check_index_url, is_postgres, sqlite_path

    if args.index is None:
        mark = marked_in_index(Path(args.root or DEFAULT_ROOT))
        if mark is not None:  # a token signed with ROOT/keys/ files would be refused by that store
            raise _Refused(f"{mark.splitlines()[0]} (ROOT/keys/in-index)")
        return None
    if args.root is not None:
        raise _Refused("give --root (a store on SQLite) or --index (stores sharing PostgreSQL), not both")
    try:
        url = check_index_url(args.index)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if sqlite_path(url) is not None or not is_postgres(url):
        raise _Refused(f"--index {args.index}: a store on SQLite keeps its tokens in ROOT/keys/: use --root ROOT")
    return url


def _on_index(url: str, work: Callable[[Any], Awaitable[T]], make_key: bool = False,
              key_file: str | None = None) -> T:
    """``work(IndexKeys)`` on the index at ``url``; ``make_key``: its key read (from ``key_file`` if given), or
    made if it has none yet."""
    from store.admin.index_keys import IndexKeys
    from store.index.db import Index
    from store.index.location import redacted

    async def run() -> T:
        index = await Index.open(url)
        try:
            keys = IndexKeys(index.conn, redacted(url))
            await (keys.load(key_file=Path(key_file) if key_file else None) if make_key else keys.refresh())
            return await work(keys)
        finally:
            await index.close()

    return asyncio.run(run())


def _create(args: argparse.Namespace) -> int:
    from shared.timespec import TimeSpecError, parse_duration
    from store.admin.keys import KeyStore

    subject = args.subject or args.role
    try:
        ttl_s = parse_duration(args.ttl) // 1_000_000
        url = _index_url(args)
        if url is None and args.key_file is not None:
            raise _Refused("--key-file is for stores sharing a PostgreSQL index: give --index postgresql://...")
        if url is None:
            token, claims = KeyStore(Path(args.root or DEFAULT_ROOT)).issue(args.role, subject, ttl_s)
        else:
            token, claims = _on_index(url, lambda keys: keys.issue_recorded(args.role, subject, ttl_s),
                                        make_key=True, key_file=args.key_file)
    except (TimeSpecError, ValueError, OSError, RuntimeError, _Refused) as exc:
        # OSError: PostgreSQL out of reach (IndexUnavailable); RuntimeError: an index from a newer sht-cctv
        return _fail(str(exc))
    print(token)
    print(f"({claims.role} token for {claims.subject}, id {claims.token_id}, valid {args.ttl})", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from store.admin.keys import KeyStore

    try:
        url = _index_url(args)
        if url is None:
            token_id = KeyStore(Path(args.root or DEFAULT_ROOT)).revoke(args.token)
            print(f"revoked {token_id}; the store and its nodes refuse it from now on")
        else:
            from store.admin.index_keys import REVOKED_POLL_S

            token_id = _on_index(url, lambda keys: keys.revoke(args.token))
            print(f"revoked {token_id}; every store on this index refuses it within {REVOKED_POLL_S:.0f} s, "
                  "and their nodes right after")
    except (KeyError, ValueError, OSError, RuntimeError, _Refused) as exc:
        return _fail(str(exc).strip("'\""))
    return 0


def _list(args: argparse.Namespace) -> int:
    from store.admin.keys import KeyStore

    try:
        url = _index_url(args)
        if url is None:
            keys = KeyStore(Path(args.root or DEFAULT_ROOT))
            issued, revoked = keys.issued(), keys.revoked()
        else:
            async def read(index_keys: Any) -> tuple[list[dict], frozenset[str]]:
                return await index_keys.issued(), index_keys.revoked()

            issued, revoked = _on_index(url, read)
    except (ValueError, OSError, RuntimeError, _Refused) as exc:
        return _fail(str(exc))
    for t in issued:
        state = "revoked" if t["token_id"] in revoked else ("expired" if t["expires"] < time.time() else "valid")
        print(f"{t['token_id']}  {t['role']:<6}  {t['subject']:<20}  expires "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(t['expires']))}  {state}")
    return 0
