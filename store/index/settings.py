"""Runtime settings per camera, stored: the current values and a history of every change.

What each setting is (type, range, default, who applies it) is declared once in
shared/settings.py; this module validates with it, keeps the values in the index
and writes a history row for every change, in one transaction.

Stores sharing an index: each change leaves the row's ``pushed_us`` NULL until the store holding the camera's
node link has sent it (``mark_pushed``); that store finds such rows with ``unpushed`` (every
``control_link.SETTINGS_POLL_S``), and the store the change was made on waits for the mark (``wait_pushed``) to
say truthfully whether it reached the node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from shared.settings import SETTINGS, CameraSettings, SettingError, defaults, spec_of
from store.index.db import transaction

log = logging.getLogger(__name__)


async def load(conn: aiosqlite.Connection, camera: str) -> CameraSettings:
    """All settings of a camera, defaults filled in. A stored value the spec no longer allows (a range
    narrowed by an upgrade, a hand edit) reads as the default, with a warning."""
    return (await load_versioned(conn, camera))[0]


async def load_versioned(conn: aiosqlite.Connection, camera: str) -> tuple[CameraSettings, list[tuple[str, int]]]:
    """``load``, with the (key, changed_us) of each stored row read: what ``mark_pushed`` marks once sent."""
    values = defaults()
    async with conn.execute("SELECT key, value, changed_us FROM settings WHERE camera = ?", (camera,)) as cur:
        rows = await cur.fetchall()
    for key, text, _ in rows:
        if key not in SETTINGS:
            continue
        try:
            values[key] = SETTINGS[key].check(json.loads(text))
        except (ValueError, SettingError) as exc:
            log.warning("camera %s: ignoring the stored %s = %s (%s); using the default", camera, key, text, exc)
    return CameraSettings(values), [(key, int(changed)) for key, _, changed in rows]


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
            "changed_by = excluded.changed_by, pushed_us = NULL",  # a new value: not sent to the node yet
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


async def unpushed(conn: aiosqlite.Connection) -> set[str]:
    """Cameras with a change no store has sent to their node yet (the table is small: cameras x settings)."""
    async with conn.execute("SELECT DISTINCT camera FROM settings WHERE pushed_us IS NULL") as cur:
        return {str(row[0]) for row in await cur.fetchall()}


async def mark_pushed(conn: aiosqlite.Connection, camera: str, sent: Sequence[tuple[str, int]], now_us: int) -> None:
    """Record that the values read as ``sent`` ((key, changed_us), from ``load_versioned``) reached the camera's
    node link. A row changed since it was read keeps NULL: its new value was not sent."""
    if not sent:
        return
    async with transaction(conn):
        await conn.executemany(
            "UPDATE settings SET pushed_us = ? WHERE camera = ? AND key = ? AND changed_us = ? AND pushed_us IS NULL",
            [(now_us, camera, key, changed) for key, changed in sent])


async def wait_pushed(conn: aiosqlite.Connection, camera: str, key: str, changed_us: int, timeout_s: float,
                      poll_s: float = 0.1) -> bool:
    """Whether the change of ``key`` made at ``changed_us`` was sent to its node (by whichever store holds the
    node's link) within ``timeout_s``. False also when a newer change replaced it meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with conn.execute("SELECT pushed_us FROM settings WHERE camera = ? AND key = ? AND changed_us = ?",
                                (camera, key, changed_us)) as cur:
            row = await cur.fetchone()
        if row is None:
            return False
        if row[0] is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)
