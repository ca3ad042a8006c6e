"""The one exception the protocol raises for anything it cannot accept."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from shared.fields import FieldError, FieldReader

T = TypeVar("T")


class ProtocolError(ValueError):
    """Bytes that are not a valid message. ``code`` is stable and machine-readable; ``field``, where known,
    is the dotted path of the bad field (``cameras.cam0.fps``)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(f"{code}: {message}")


def read_message(data: object, what: str, read: Callable[[FieldReader], T]) -> T:
    """Run a ``FieldReader``-based parser over a JSON value; a bad field becomes a ``bad-field``
    ``ProtocolError`` that names it (``what``: the message, for the text, e.g. "node health")."""
    try:
        return read(FieldReader(data, what))
    except FieldError as exc:
        where = f"field {exc.field!r} of the {what}" if exc.field else f"the {what}"
        raise ProtocolError("bad-field", f"{where} {exc.message}", exc.field) from None


def parse_json_object(data: str | bytes) -> dict[str, Any]:
    """Parse a JSON text message that must be an object; anything else is a ProtocolError."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad-json", f"message is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad-json", "message must be a JSON object")
    return value
