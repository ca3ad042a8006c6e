"""Runtime settings per camera, stored: the current values and a history of every change.

What each setting is (type, range, default, who applies it) is declared once in
shared/settings.py; this module validates with it, keeps the values in SQLite
and writes a history row for every change, in one transaction.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiosqlite

from shared.settings import SETTINGS, CameraSettings, SettingError, defaults, spec_of
from store.index.db import transaction

log = logging.getLogger(__name__)


async def load(conn: aiosqlite.Connection, camera: str) -> CameraSettings:
    """All settings of a camera, defaults filled in. A stored value the spec no longer allows (a range
    narrowed by an upgrade, a hand edit) reads as the default, with a warning."""
    values = defaults()
    async with conn.execute("SELECT key, value FROM settings WHERE camera = ?", (camera,)) as cur:
        rows = await cur.fetchall()
    for key, text in rows:
        if key not in SETTINGS:
            continue
        try:
            values[key] = SETTINGS[key].check(json.loads(text))
        except (ValueError, SettingError) as exc:
            log.warning("camera %s: ignoring the stored %s = %s (%s); using the default", camera, key, text, exc)
    return CameraSettings(values)


async def camera_settings(conn: aiosqlite.Connection, camera: str) -> dict[str, Any]:
    """All settings of a camera as JSON, defaults filled in."""
    return (await load(conn, camera)).to_json()


async def all_settings(conn: aiosqlite.Connection, cameras: list[str]) -> dict[str, dict[str, Any]]:
    return {cam: await camera_settings(conn, cam) for cam in cameras}


async def set_setting(conn: aiosqlite.Connection, camera: str, key: str, value: Any, by: str,
                      now_us: int) -> tuple[Any, Any]:
    """Validate and store one setting with its history row, in one transaction; (old, new)."""
    value = spec_of(key).check(value)
    async with transaction(conn):
        old = (await camera_settings(conn, camera))[key]
        await conn.execute(
            "INSERT INTO settings (camera, key, value, changed_us, changed_by) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (camera, key) DO UPDATE SET value = excluded.value, changed_us = excluded.changed_us, "
            "changed_by = excluded.changed_by",
            (camera, key, json.dumps(value), now_us, by),
        )
        await conn.execute(
            "INSERT INTO settings_history (camera, key, old_value, new_value, changed_us, changed_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (camera, key, json.dumps(old), json.dumps(value), now_us, by),
        )
    return old, value


async def history(conn: aiosqlite.Connection, camera: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    where, args = ("WHERE camera = ?", [camera]) if camera else ("", [])
    async with conn.execute(
        f"SELECT id, camera, key, old_value, new_value, changed_us, changed_by FROM settings_history {where} "
        "ORDER BY id DESC LIMIT ?", (*args, limit),
    ) as cur:
        rows = await cur.fetchall()
    return [{"id": i, "camera": cam, "key": key, "old": json.loads(old),
             "new": json.loads(new), "changed_us": when, "changed_by": by}
            for i, cam, key, old, new, when, by in rows]
