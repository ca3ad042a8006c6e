"""The one exception the protocol raises for anything it cannot accept."""

from __future__ import annotations

import json
import re
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


# Deepest nesting of arrays and objects a wire message may have. json.loads recurses once a level, so a
# 30,000-deep request (< 64 KiB) raised RecursionError; no message we send nests deeper than about 6.
MAX_JSON_DEPTH = 32
# A JSON string, escapes included: what is inside one is text, not structure. The closing quote is optional, so
# a match never fails and never backtracks (an unterminated string runs to the end): linear in the text.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True if ``text`` nests arrays/objects deeper than ``limit``; never recurses, stops at the first level too
    deep. Text that is not JSON may give either answer: json.loads then refuses it anyway."""
    if text.count("[") + text.count("{") <= limit:  # the usual message: too few brackets to nest that deep
        return False
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON message of any shape, nested at most ``max_depth`` deep; anything else is ``bad-json``."""
    try:
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data), "surrogatepass")
    except (UnicodeDecodeError, LookupError) as exc:
        raise ProtocolError("bad-json", f"message is not JSON: {exc}") from None
    if json_depth_exceeds(text, max_depth):
        raise ProtocolError("bad-json", f"message nests arrays and objects more than {max_depth} deep, the "
                            "most a message may; send a flatter message")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad-json", f"message is not JSON: {exc}") from None


def parse_json_object(data: str | bytes) -> dict[str, Any]:
    """Parse a JSON text message that must be an object; anything else is a ProtocolError."""
    value = parse_json(data)
    if not isinstance(value, dict):
        raise ProtocolError("bad-json", "message must be a JSON object")
    return value
