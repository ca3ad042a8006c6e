"""``sht token create|revoke|list``: tokens signed by a store's key, made on the store's machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.auth import ROLES


def add_parsers(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="make, revoke or list access tokens (run where the store's root is)")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="print a new token")
    create.add_argument("--root", default="./sht-data", help="the store's root (default ./sht-data)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--subject", help="who or what it is for (default: the role)")
    create.add_argument("--ttl", default="30d", help="lifetime, e.g. 12h, 30d, 52w (default 30d)")
    create.set_defaults(func=_create)
    revoke = tsub.add_parser("revoke", help="revoke a token (by its id or the token itself)")
    revoke.add_argument("--root", default="./sht-data")
    revoke.add_argument("token", help="token id (see `sht token list`) or the token")
    revoke.set_defaults(func=_revoke)
    listing = tsub.add_parser("list", help="tokens this store has issued")
    listing.add_argument("--root", default="./sht-data")
    listing.set_defaults(func=_list)


def _fail(message: str) -> int:
    print(f"sht: error: {message}", file=sys.stderr)
    return 2


def _create(args: argparse.Namespace) -> int:
    from shared.timespec import TimeSpecError, parse_duration
    from store.admin.keys import KeyStore

    try:
        ttl_s = parse_duration(args.ttl) // 1_000_000
        token, claims = KeyStore(Path(args.root)).issue(args.role, args.subject or args.role, ttl_s)
    except (TimeSpecError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(token)
    print(f"({claims.role} token for {claims.subject}, id {claims.token_id}, valid {args.ttl})", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from store.admin.keys import KeyStore

    try:
        token_id = KeyStore(Path(args.root)).revoke(args.token)
    except (KeyError, ValueError, OSError) as exc:
        return _fail(str(exc).strip("'\""))
    print(f"revoked {token_id}; the store and its nodes refuse it from now on")
    return 0


def _list(args: argparse.Namespace) -> int:
    import time

    from store.admin.keys import KeyStore

    keys = KeyStore(Path(args.root))
    revoked = keys.revoked()
    for t in keys.issued():
        state = "revoked" if t["token_id"] in revoked else ("expired" if t["expires"] < time.time() else "valid")
        print(f"{t['token_id']}  {t['role']:<6}  {t['subject']:<20}  expires "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(t['expires']))}  {state}")
    return 0
