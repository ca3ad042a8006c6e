"""What an object label may be, on every wire that carries one (``events`` results and filters, ``snapshot``).

A label is a model's class name: ``person``, ``car``, COCO's ``traffic light``: 1..64 printable characters.
"""

from __future__ import annotations

MAX_LABEL_CHARS = 64


def is_label(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_LABEL_CHARS and value.isprintable()
