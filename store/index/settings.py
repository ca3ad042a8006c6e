"""Runtime settings per camera: validated, stored with a history, pushed to the node.

The node's JSON config holds only static hardware settings; what an operator
changes while the system runs lives here (the seed's JSON + SQLite hybrid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from store.index.db import transaction


class SettingError(ValueError):
    """A setting that does not exist or a value it cannot take; names both."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class SettingSpec:
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    def check(self, key: str, value: Any) -> Any:
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise SettingError(key, f"{key} cannot be null")
        if self.choices is not None:
            if value not in self.choices:
                raise SettingError(key, f"{key} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(key, f"{key} must be a number, got {value!r}")
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise SettingError(key, f"{key} must be between {self.minimum} and {self.maximum}, got {value!r}")
        return value


SETTINGS: dict[str, SettingSpec] = {
    "recording_mode": SettingSpec("continuous", "keep every segment, or only those near motion events",
                                  choices=("continuous", "motion")),
    "motion_sensitivity": SettingSpec(0.5, "0 = least sensitive, 1 = most", minimum=0, maximum=1),
    "retention_days": SettingSpec(None, "keep this camera's footage this many days (null: the store's "
                                  "--max-age)", minimum=1, maximum=3650, nullable=True),
}


def defaults() -> dict[str, Any]:
    return {k: spec.default for k, spec in SETTINGS.items()}


async def camera_settings(conn: aiosqlite.Connection, camera: str) -> dict[str, Any]:
    """All settings of a camera, defaults filled in."""
    values = defaults()
    async with conn.execute("SELECT key, value FROM settings WHERE camera = ?", (camera,)) as cur:
        for key, value in await cur.fetchall():
            if key in values:
                values[key] = json.loads(value)
    return values


async def all_settings(conn: aiosqlite.Connection, cameras: list[str]) -> dict[str, dict[str, Any]]:
    return {cam: await camera_settings(conn, cam) for cam in cameras}


async def set_setting(conn: aiosqlite.Connection, camera: str, key: str, value: Any, by: str,
                      now_us: int) -> tuple[Any, Any]:
    """Validate and store one setting with its history row, in one transaction; (old, new)."""
    spec = SETTINGS.get(key)
    if spec is None:
        raise SettingError(key, f"unknown setting {key!r}; settings are {', '.join(SETTINGS)}")
    value = spec.check(key, value)
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
