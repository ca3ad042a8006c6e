"""Typed reads from parsed JSON with errors that name the bad field.

``FieldReader`` walks one JSON object and raises ``FieldError`` carrying the
dotted path of the bad field (``cameras[1].fps``), the plain message and where
the document came from. Node configs and scenarios (shared/config.py) and the
wire messages (shared/protocol/) both read with it, so every parser reports a
mistake the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from shared.ids import InvalidId, check_id

_MISSING: Any = object()


class FieldError(ValueError):
    """A value that cannot be used: ``field`` is its dotted path (None: the whole document), ``message`` why."""

    def __init__(self, message: str, *, source: str, field: str | None = None) -> None:
        self.source = source
        self.field = field
        self.message = message
        where = f"{source}: field '{field}'" if field else source
        super().__init__(f"{where}: {message}")


class FieldReader:
    """Typed access to one JSON object, remembering where it sits in its document.

    Every getter takes a ``default`` (returned when the key is absent; without one the key is required)
    and, where a JSON ``null`` is a meaningful value, ``nullable=True`` (then null reads as None).
    """

    def __init__(self, data: object, source: str, path: str = "") -> None:
        self.source = source
        self.path = path
        if not isinstance(data, Mapping):
            raise FieldError("must be a JSON object", source=source, field=path or None)
        self.data: Mapping[str, Any] = data

    def field_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> FieldError:
        return FieldError(message, source=self.source, field=self.field_path(key))

    def has(self, key: str) -> bool:
        return key in self.data

    def _value(self, key: str, default: Any) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None, integer: bool = False, nullable: bool = False) -> Any:
        """The number as JSON had it (an int stays an int, so writing it back gives the same text)."""
        if key not in self.data:
            return self._value(key, default)
        value: Any = self.data[key]
        if value is None and nullable:
            return None
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.error(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        number = cast(float, value)
        if minimum is not None and number < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value!r}")
        if maximum is not None and number > maximum:
            raise self.error(key, f"must be at most {maximum}, got {value!r}")
        return value

    def integer(self, key: str, default: Any = _MISSING, **bounds: Any) -> Any:
        value = self.number(key, default, integer=True, **bounds)
        return None if value is None else int(value)

    def string(self, key: str, default: Any = _MISSING, *, nullable: bool = False, empty: bool = False) -> Any:
        """A string; empty only with ``empty=True`` (names and ids are never empty, messages may be)."""
        if key not in self.data:
            return self._value(key, default)
        value = self.data[key]
        if value is None and nullable:
            return None
        if not isinstance(value, str) or (not value and not empty):
            raise self.error(key, f"must be a {'' if empty else 'non-empty '}string, got {value!r}")
        return value

    def ident(self, key: str, default: str = _MISSING) -> str:
        value = self.string(key, default)
        try:
            return check_id(value, "id")
        except InvalidId as exc:
            raise self.error(key, str(exc)) from exc

    def boolean(self, key: str, default: Any = _MISSING, *, nullable: bool = False) -> Any:
        if key not in self.data:
            return self._value(key, default)
        value = self.data[key]
        if value is None and nullable:
            return None
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def idents(self, key: str, default: list[str] = _MISSING) -> list[str]:
        """A JSON array of valid ids (cameras, nodes)."""
        if key not in self.data:
            return list(self._value(key, default))
        value = self.data[key]
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of ids, got {value!r}")
        for item in value:
            try:
                check_id(item, "id")
            except InvalidId as exc:
                raise self.error(key, str(exc)) from exc
        return list(value)

    def choice(self, key: str, options: tuple[str, ...], default: str = _MISSING) -> str:
        value = self.string(key, default)
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def pair(self, key: str, default: tuple[float, float] = _MISSING, **bounds: Any) -> tuple:
        """A two-element JSON array of numbers, e.g. a position or a size."""
        return tuple(self.numbers(key, 2, default, **bounds))

    def numbers(self, key: str, count: int, default: tuple[float, ...] = _MISSING, *,
                minimum: float | None = None, maximum: float | None = None) -> list[float]:
        if key not in self.data:
            return list(self._value(key, default))
        value = self.data[key]
        if not isinstance(value, list) or len(value) != count:
            raise self.error(key, f"must be an array of {count} numbers, got {value!r}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise self.error(key, f"must contain only numbers, got {item!r}")
            if (minimum is not None and item < minimum) or (maximum is not None and item > maximum):
                raise self.error(key, f"values must lie in [{minimum}, {maximum}], got {item!r}")
        return [float(v) for v in value]

    def spans(self, key: str, default: Any = _MISSING) -> list[tuple[int, int]]:
        """An array of ``[start, end]`` integer pairs with start <= end (intervals, gaps)."""
        value = self._value(key, default)
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of [start, end] pairs, got {value!r}")
        out = []
        for item in value:
            if not (isinstance(item, list) and len(item) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in item) and item[0] <= item[1]):
                raise self.error(key, f"must hold [start, end] integer pairs with start <= end, got {item!r}")
            out.append((item[0], item[1]))
        return out

    def json_object(self, key: str, default: Any = _MISSING, *, nullable: bool = False) -> Any:
        """A JSON object passed on as it is (e.g. settings, typed elsewhere)."""
        if key not in self.data:
            return self._value(key, default)
        value = self.data[key]
        if value is None and nullable:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a JSON object, got {value!r}")
        return dict(value)

    def child(self, key: str, default: Mapping[str, Any] | None = _MISSING) -> FieldReader:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "is required")
            return FieldReader(default or {}, self.source, self.field_path(key))
        return FieldReader(self.data[key], self.source, self.field_path(key))

    def optional_child(self, key: str) -> FieldReader | None:
        """The object at ``key``, or None when it is absent or null."""
        if self.data.get(key) is None:
            return None
        return FieldReader(self.data[key], self.source, self.field_path(key))

    def children(self, key: str, default: list[Any] | None = _MISSING) -> list[FieldReader]:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "is required")
            return []
        value = self.data[key]
        if not isinstance(value, list):
            raise self.error(key, f"must be an array, got {value!r}")
        return [FieldReader(v, self.source, f"{self.field_path(key)}[{i}]") for i, v in enumerate(value)]

    def keyed_children(self, key: str, default: Mapping[str, Any] | None = _MISSING) -> dict[str, FieldReader]:
        """An object of objects (e.g. per camera), each read on its own: ``cameras.cam0.fps``."""
        value = self._value(key, default)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a JSON object, got {value!r}")
        return {str(k): FieldReader(v, self.source, f"{self.field_path(key)}.{k}") for k, v in value.items()}

    def reject_unknown(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.error(
                unknown[0], f"is not a known setting (known: {', '.join(sorted(allowed))})"
            )
