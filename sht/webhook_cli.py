"""``sht webhook ...``: the store's webhooks from a shell (docs/integrations.md).

- ``sht webhook secret --root DIR``: the store's signing secret (made if the store has not yet);
- ``sht webhook test URL [--secret S | --root DIR]``: POST a signed sample change, say what the receiver answered;
- ``sht webhook list|add|remove`` (``--store``, an admin token to change): the store-wide setting ``webhooks``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from shared.settings import WEBHOOKS
from shared.webhooks import check_webhooks

SAMPLE_EVENT_ID = 0  # the sample's id: no real event has it


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from sht.query_cli import _run, add_store_arg

    hook = sub.add_parser("webhook", help="webhooks: the signing secret, a test POST, the list the store sends to")
    cmds = hook.add_subparsers(dest="webhook_command", required=True)

    secret = cmds.add_parser("secret", help="print the store's webhook signing secret (ROOT/webhook-secret)")
    secret.add_argument("--root", required=True, help="the store's data directory")
    secret.set_defaults(func=cmd_secret)

    test = cmds.add_parser("test", help="POST a signed sample event change to URL and show the answer")
    test.add_argument("url")
    signer = test.add_mutually_exclusive_group()
    signer.add_argument("--secret", help="sign with this secret (a webhook's own)")
    signer.add_argument("--root", help="sign with this store's secret (default: ./sht-data's)")
    test.set_defaults(func=cmd_test)

    listing = cmds.add_parser("list", help="the webhooks in the store's settings (secrets hidden)")
    add_store_arg(listing)
    listing.set_defaults(func=lambda a: _run(_list, a))

    add = cmds.add_parser("add", help="add (or replace) a webhook in the store's settings (admin token)")
    add_store_arg(add)
    add.add_argument("url")
    add.add_argument("--secret", help="its own signing secret (default: the store's)")
    add.add_argument("--camera", action="append", default=[], help="only these cameras (repeat; default all)")
    add.add_argument("--label", action="append", default=[], help="only events with these labels (repeat)")
    add.add_argument("--zone", action="append", default=[], help="only events in these named zones (repeat)")
    add.set_defaults(func=lambda a: _run(_add, a))

    remove = cmds.add_parser("remove", help="take a webhook out of the store's settings (admin token)")
    add_store_arg(remove)
    remove.add_argument("url")
    remove.set_defaults(func=lambda a: _run(_remove, a))


def _fail(message: str) -> int:
    print(f"sht webhook: {message}", file=sys.stderr)
    return 1


def cmd_secret(args: argparse.Namespace) -> int:
    from store.notify.webhooks import load_or_create_secret

    root = Path(args.root)
    if not root.is_dir():
        return _fail(f"{root} is not a directory: give the store's --root")
    try:
        print(load_or_create_secret(root))
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    return 0


def sample_change() -> dict[str, Any]:
    """What a webhook is sent, with made-up values (event id 0)."""
    from shared.clock import now_us
    from store.notify.changes import EventChange, EventObject

    now = now_us()
    event = EventObject(SAMPLE_EVENT_ID, "cam0", "node0", now - 2_000_000, None, "motion", "person", 0.87,
                        (0.4, 0.2, 0.1, 0.5), (), None, alert=True, labels={"person": 1}, motion_score=0.3)
    return EventChange("new", None, event).to_json()


def cmd_test(args: argparse.Namespace) -> int:
    from shared.webhooks import check_url
    from store.notify.webhooks import SECRET_FILE, headers_for, new_session, post

    try:
        url = check_url(args.url)
        # A store's secret as it is (never made here: a new one is a secret no receiver has).
        secret = args.secret or (Path(args.root or "./sht-data") / SECRET_FILE).read_text().strip()
        if not secret:
            raise ValueError(f"{Path(args.root or './sht-data') / SECRET_FILE} is empty")
    except (OSError, ValueError) as exc:
        return _fail(f"{exc} (give --secret, or --root with the data directory of a store started once)")
    body = json.dumps(sample_change(), separators=(",", ":")).encode()
    headers = headers_for(body, secret, SAMPLE_EVENT_ID, "new", "test")

    async def send() -> Any:
        async with new_session() as session:
            return await post(session, url, body, headers)

    outcome = asyncio.run(send())
    print(f"POST {url}: {outcome.detail}")
    print(f"signed {headers['X-SHT-Signature']}")
    if outcome.delivered:
        return 0
    return _fail("the receiver did not take it" + (" (a store would try again)" if outcome.retry_s else ""))


async def _current(store: Any) -> list[dict[str, Any]]:
    answer = await store.call("settings")
    if "store" not in answer:
        raise OSError("this store is older than webhooks in its settings")
    return list(answer["store"].get(WEBHOOKS, []))


async def _list(args: argparse.Namespace) -> int:
    from sht.query_cli import client

    async with client(args) as store:
        hooks = await _current(store)
    for hook in hooks:
        filters = ", ".join(f"{k}={','.join(hook[k])}" for k in ("cameras", "labels", "zones") if hook.get(k))
        print(f"{hook['url']}  secret: {'own' if hook.get('secret') else 'the store’s'}"
              + (f"  only {filters}" if filters else ""))
    if not hooks:
        print("no webhooks in the settings (sht store --webhook URL adds others for that run)")
    return 0


async def _set(store: Any, hooks: list[dict[str, Any]], by: str) -> None:
    """The list as read back (each secret ``***``, which the store keeps as it was) with a change."""
    await store.call("set_setting", key=WEBHOOKS, value=hooks, by=by)


async def _add(args: argparse.Namespace) -> int:
    from sht.query_cli import client

    hook: dict[str, Any] = {"url": args.url}
    if args.secret:
        hook["secret"] = args.secret
    for key, values in (("cameras", args.camera), ("labels", args.label), ("zones", args.zone)):
        if values:
            hook[key] = values
    try:
        check_webhooks([hook])  # said here, before the store says the same
    except ValueError as exc:
        return _fail(str(exc))
    async with client(args) as store:
        hooks = [h for h in await _current(store) if h["url"] != args.url]
        await _set(store, [*hooks, hook], "sht webhook add")
    print(f"added {args.url} ({len(hooks) + 1} webhook(s) in the settings)")
    return 0


async def _remove(args: argparse.Namespace) -> int:
    from sht.query_cli import client

    async with client(args) as store:
        hooks = await _current(store)
        left = [h for h in hooks if h["url"] != args.url]
        if len(left) == len(hooks):
            return _fail(f"{args.url} is not in the settings: " + (", ".join(h["url"] for h in hooks) or "none are"))
        await _set(store, left, "sht webhook remove")
    print(f"removed {args.url}")
    return 0
