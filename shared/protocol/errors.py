"""The one exception the protocol raises for anything it cannot accept."""

from __future__ import annotations

import json
from typing import Any


class ProtocolError(ValueError):
    """Bytes that are not a valid message. ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def parse_json_object(data: str | bytes) -> dict[str, Any]:
    """Parse a JSON text message that must be an object; anything else is a ProtocolError."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad-json", f"message is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("bad-json", "message must be a JSON object")
    return value
