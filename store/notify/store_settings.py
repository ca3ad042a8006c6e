"""Store-wide runtime settings (shared/settings.py ``STORE_SETTINGS``: ``webhooks``), kept in the index's
``settings`` and ``settings_history`` tables under the camera ``STORE_WIDE`` (``*``, never a camera id), so stores
sharing a PostgreSQL index share them and every change has its history row, as a camera's settings do.

Nothing is pushed to nodes; the stores read them again when one changes here (``ChangeFeed.settings_changed(None)``)
and every ``POLL_S`` (a change made on another store of the index). The history keeps values as anyone may read
them (a webhook's secret as ``***``: shared/webhooks.py ``redacted``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.settings import STORE_SETTINGS, STORE_WIDE, WEBHOOKS, SettingError, store_spec_of
from shared.webhooks import redacted
from store.index.db import transaction

log = logging.getLogger(__name__)

POLL_S = 10.0


def public(key: str, value: Any) -> Any:
    """A value as an API reader may see it (no secrets)."""
    return redacted(value) if key == WEBHOOKS else value


async def load_store_setting(conn: Any, key: str) -> Any:
    """The setting's value (its default when none is stored, or when the stored one no longer passes its check)."""
    spec = store_spec_of(key)
    async with conn.execute("SELECT value FROM settings WHERE camera = ? AND key = ?", (STORE_WIDE, key)) as cur:
        row = await cur.fetchone()
    if row is None:
        return spec.check(spec.default)
    try:
        return spec.check(json.loads(row[0]))
    except (ValueError, SettingError) as exc:
        log.warning("ignoring the stored store-wide %s (%s); using the default", key, exc)
        return spec.check(spec.default)


async def store_settings(conn: Any, public_only: bool = True) -> dict[str, Any]:
    """Every store-wide setting (secrets hidden unless ``public_only`` is False)."""
    values = {key: await load_store_setting(conn, key) for key in STORE_SETTINGS}
    return {key: public(key, v) for key, v in values.items()} if public_only else values


async def set_store_setting(conn: Any, key: str, value: Any, by: str, now_us: int) -> tuple[Any, Any]:
    """Check and store one store-wide setting with its history row, in one transaction; (old, new) as anyone may
    read them. A webhook given with ``"secret": "***"`` (what a reader sees) keeps the secret it has."""
    spec = store_spec_of(key)
    async with transaction(conn):
        old = await load_store_setting(conn, key)
        if key == WEBHOOKS and isinstance(value, list):
            value = _keep_hidden_secrets(value, old)
        value = spec.check(value)
        await conn.execute(
            "INSERT INTO settings (camera, key, value, changed_us, changed_by) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (camera, key) DO UPDATE SET value = excluded.value, changed_us = excluded.changed_us, "
            "changed_by = excluded.changed_by",
            (STORE_WIDE, key, json.dumps(value), now_us, by))
        await conn.execute(
            "INSERT INTO settings_history (camera, key, old_value, new_value, changed_us, changed_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (STORE_WIDE, key, json.dumps(public(key, old)), json.dumps(public(key, value)), now_us, by))
    return public(key, old), public(key, value)


def _keep_hidden_secrets(value: list[Any], old: list[dict[str, Any]]) -> list[Any]:
    """``***`` (a value read back and sent again) means "the secret this url has now"."""
    secrets = {hook["url"]: hook.get("secret") for hook in old}
    out: list[Any] = []
    for item in value:
        if isinstance(item, dict) and item.get("secret") == "***":
            item = {k: v for k, v in item.items() if k != "secret"}
            if secrets.get(item.get("url")):
                item["secret"] = secrets[item["url"]]
        out.append(item)
    return out
