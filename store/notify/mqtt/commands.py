"""Commands from MQTT: ``PREFIX/CAMERA/recording_mode/set``, ``.../motion_sensitivity/set``, ``.../notify/set``.

Each is applied exactly as ``sht settings`` applies a change: the store's API method ``set_setting`` (the same
validation by the one settings spec, the same history row, here with ``by = "mqtt"``, the same push to the node).
A bad value changes nothing: ``CommandRefused`` says why, and the bridge logs it and publishes it on
``PREFIX/CAMERA/error``.

Payloads are text: ``recording_mode`` one of continuous, motion, objects; ``motion_sensitivity`` a number from 0
to 1; ``notify`` ``ON`` or ``OFF`` (Home Assistant's switch), or a mode (off, motion, objects) from a script.
``OFF`` sets ``notify`` to off; ``ON`` keeps a mode that is already on, else restores the camera's last mode
other than off from its settings history, else the default (objects).

A command published retained is applied when it comes (a broker passes a live message on with the retain flag
cleared), but not again when the store reconnects and the broker hands it over as a retained message: that one is
refused, with an error saying to publish without the retain flag (and to clear it with an empty retained message).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from shared.clock import iso_utc
from shared.settings import NOTIFY, NOTIFY_MODES, NOTIFY_OFF, SETTINGS, SettingError
from store.index import settings as stored_settings
from store.notify.mqtt.topics import COMMANDS, OFF, ON
from store.serve.api import Api, ApiError

MAX_PAYLOAD_CHARS = 200  # a command is a word or a number; what is echoed in an error is cut here
HISTORY_LOOKBACK = 200  # settings history rows read to find the last notify mode that was on


class CommandRefused(Exception):
    """A command that changed nothing, and why."""


@dataclass(frozen=True)
class Applied:
    camera: str
    key: str
    old: Any
    new: Any
    pushed: bool


def payload_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandRefused("the payload is not UTF-8 text") from None


async def _notify_on(api: Api, camera: str) -> str:
    """The mode ``ON`` means for a camera: its current one if on, else its last one that was on, else the default."""
    current = (await stored_settings.camera_settings(api.conn, camera))[NOTIFY]
    if current != NOTIFY_OFF:
        return str(current)
    for row in await stored_settings.history(api.conn, camera, HISTORY_LOOKBACK):
        if row["key"] == NOTIFY and row["new"] in NOTIFY_MODES and row["new"] != NOTIFY_OFF:
            return str(row["new"])
    return str(SETTINGS[NOTIFY].default)


async def command_value(api: Api, camera: str, command: str, text: str) -> Any:
    """The setting's value a command's payload asks for; CommandRefused when the spec does not take it."""
    key = COMMANDS[command]
    if key == NOTIFY:
        if text.upper() == ON:
            return await _notify_on(api, camera)
        if text.upper() == OFF:
            return NOTIFY_OFF
        if text not in NOTIFY_MODES:
            raise CommandRefused(f"notify takes ON or OFF (or a mode: {', '.join(NOTIFY_MODES)}), got {text!r}")
        return text
    try:
        return SETTINGS[key].parse_text(text)
    except SettingError as exc:
        raise CommandRefused(str(exc)) from None


async def apply_command(api: Api, camera: str, command: str, payload: bytes, retained: bool) -> Applied:
    """Apply one command as ``sht settings`` would, recorded ``by = "mqtt"``; CommandRefused if nothing changed."""
    if retained:
        raise CommandRefused("a retained command is not applied again when the store connects: publish commands "
                             "without the retain flag, and clear this one with an empty retained message")
    text = payload_text(payload)
    value = await command_value(api, camera, command, text)
    try:
        # The API's own method: its camera check, the spec's validation, the history row, the push to the node.
        result = await api.set_setting(camera, COMMANDS[command], value, by="mqtt")
    except ApiError as exc:
        raise CommandRefused(exc.message) from None
    return Applied(camera, result["key"], result["old"], result["new"], bool(result["pushed"]))


def error_payload(topic: str, payload: bytes, error: str) -> str:
    """``PREFIX/CAMERA/error``: the command, what it carried and why it changed nothing."""
    shown = payload.decode("utf-8", errors="replace")[:MAX_PAYLOAD_CHARS]
    return json.dumps({"topic": topic, "payload": shown, "error": error,
                       "time": iso_utc(time.time_ns() // 1000)}, separators=(",", ":"))
