"""Flat records of optional readings (numbers, strings, flags), read and written by their field types.

Health is full of such records: every field may be missing (an older node) or
null (not measured), and the rest must have the declared type. Rather than a
hand-written reader per record, ``read_flat`` reads each field by its annotation
with ``FieldReader``, so all of them validate the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from shared.fields import FieldReader

R = TypeVar("R")

# The annotations (strings, as ``from __future__ import annotations`` leaves them) a flat record may use.
_READERS: dict[str, Any] = {
    "int | None": lambda r, key: r.integer(key, None, nullable=True),
    "float | None": lambda r, key: r.number(key, None, nullable=True),
    "str | None": lambda r, key: r.string(key, None, nullable=True, empty=True),
    "bool | None": lambda r, key: r.boolean(key, None, nullable=True),
}


def read_flat(cls: type[R], r: FieldReader) -> R:
    """A dataclass of ``X | None`` fields from a JSON object: absent or null is None, a wrong type an error."""
    return cls(**read_flat_fields(cls, r))


def read_flat_fields(cls: type, r: FieldReader, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``X | None`` fields of a dataclass, read as ``read_flat`` does, leaving out ``exclude`` (read by hand)."""
    return {f.name: _READERS[str(f.type)](r, f.name) for f in dataclasses.fields(cls) if f.name not in exclude}


def flat_json(record: Any) -> dict[str, Any]:
    """The JSON object of a flat record: every field, in declaration order."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
