"""The one exception the protocol raises for anything it cannot accept."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that are not a valid message. ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")
