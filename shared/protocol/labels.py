"""What an object label may be, on every wire that carries one (``events`` results and filters, ``snapshot``,
the detect workers' protocol), and in settings (shared/settings.py adds what typing labels as text needs).

A label is a model's class name: ``person``, ``car``, COCO's ``traffic light``: 1..64 printable characters.
"""

from __future__ import annotations

MAX_LABEL_CHARS = 64


def is_label(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL_CHARS and value.isprintable()


def label_problem(value: object) -> str | None:
    """Why ``value`` cannot be an object label, or None when it can."""
    if not is_label(value):
        return f"a label must be 1 to {MAX_LABEL_CHARS} printable characters, got {str(value)[:80]!r}"
    return None
