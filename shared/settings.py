"""Runtime settings per camera: the one definition of each.

The node's JSON config holds only static hardware settings; what an operator
changes while the system runs is declared here, once: type, range or choices,
default, description, and who applies it. The store validates and keeps them
(store/index/settings.py) and pushes a camera's settings to its node as a
``CameraSettings`` (shared/protocol/control.py); the console's settings form and
``sht settings --help`` are generated from ``SETTINGS``. A new setting is one
entry in ``SETTINGS`` plus the code that acts on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.protocol.labels import MAX_LABEL_CHARS
from shared.webhooks import check_webhooks

RECORDING_MODE = "recording_mode"
MOTION_SENSITIVITY = "motion_sensitivity"
RETENTION_DAYS = "retention_days"
OBJECTS = "objects"
MIN_SCORE = "min_score"
THRESHOLD = "threshold"
NOTIFY = "notify"
NOTIFY_LABELS = "notify_labels"
NOTIFY_ZONES = "notify_zones"
NOTIFY_COOLDOWN_S = "notify_cooldown_s"
WEBHOOKS = "webhooks"  # store-wide (STORE_SETTINGS)

# The ``settings`` rows of store-wide settings (not a camera's) have this camera: never a camera id (shared/ids.py).
STORE_WIDE = "*"

# The values of ``recording_mode``.
CONTINUOUS = "continuous"  # keep every segment
MOTION = "motion"  # keep only segments near motion events (node/recording/modes.py)
OBJECTS_MODE = "objects"  # as motion, but only near events the store labelled (docs/objects.md)
RECORDING_MODES = (CONTINUOUS, MOTION, OBJECTS_MODE)

# The values of ``notify`` (store/notify/rules.py): which events are alerts.
NOTIFY_OFF = "off"  # none
NOTIFY_MOTION = "motion"  # every motion event
NOTIFY_OBJECTS = "objects"  # motion events the store's detector labelled (with one of notify_labels, if any)
NOTIFY_MODES = (NOTIFY_OFF, NOTIFY_MOTION, NOTIFY_OBJECTS)

# An object label ("person", "traffic light"): what a detector's labels file names.
MAX_LABELS = 32  # in one ``objects`` setting or one zone

AppliedBy = Literal["node", "store"]


class SettingError(ValueError):
    """A setting that does not exist or a value it cannot take; names both."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def label_problem(label: object) -> str | None:
    """Why ``label`` is not an object label a camera can look for, or None when it is one: a wire label
    (shared/protocol/labels.py), without a comma (a comma separates labels where an operator types them) and
    without a space at either end."""
    if not isinstance(label, str):
        return f"a label must be a string, got {label!r}"
    if not label:
        return "a label cannot be empty"
    if len(label) > MAX_LABEL_CHARS:
        return f"a label must be 1 to {MAX_LABEL_CHARS} characters, got {len(label)}: {label[:80]!r}..."
    if not label.isprintable() or "," in label or label != label.strip():
        return f"a label must be printable characters without a comma or a space at either end, got {label!r}"
    return None


def check_labels(value: object, what: str) -> list[str]:
    """A list of distinct labels (at most MAX_LABELS), as given; else ValueError naming ``what``."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list of labels such as [\"person\", \"car\"], got {value!r}")
    if len(value) > MAX_LABELS:
        raise ValueError(f"{what} may list at most {MAX_LABELS} labels, got {len(value)}")
    for label in value:
        if (problem := label_problem(label)) is not None:
            raise ValueError(f"{what}: {problem}")
    if len(set(value)) != len(value):
        twice = sorted({label for label in value if value.count(label) > 1})
        raise ValueError(f"{what} lists {', '.join(map(repr, twice))} more than once")
    return list(value)


@dataclass(frozen=True)
class SettingSpec:
    """One runtime setting: one of ``choices``, a number in [minimum, maximum], or (``labels``) a list of
    object labels."""

    key: str
    default: Any
    description: str
    applied_by: AppliedBy  # the process whose behaviour it changes
    label: str  # a short name for forms and table columns
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False  # null is a value: "use the default of whoever applies it"
    unit: str = ""  # after a number in a table: "d"
    labels: bool = False  # a JSON array of distinct object labels; typed as "person, car" in a form
    validate: Callable[[Any], Any] | None = None  # any other JSON value: checked (ValueError) and tidied by this

    @property
    def kind(self) -> Literal["choice", "number", "labels", "json"]:
        if self.validate is not None:
            return "json"
        if self.labels:
            return "labels"
        return "choice" if self.choices is not None else "number"

    def check(self, value: Any) -> Any:
        """The value if this setting can take it; else SettingError naming the setting."""
        key = self.key
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise SettingError(key, f"{key} cannot be null")
        if self.validate is not None:
            try:
                return self.validate(value)
            except ValueError as exc:
                raise SettingError(key, f"{key}: {exc}") from None
        if self.choices is not None:
            if value not in self.choices:
                raise SettingError(key, f"{key} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.labels:
            try:
                return check_labels(value, key)
            except ValueError as exc:
                raise SettingError(key, str(exc)) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SettingError(key, f"{key} must be a number, got {value!r}")
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise SettingError(key, f"{key} must be between {self.minimum} and {self.maximum}, got {value!r}")
        return value

    def parse_text(self, text: str) -> Any:
        """What an operator typed in a form field, checked: empty is null where null is allowed."""
        text = text.strip()
        if self.choices is not None:
            return self.check(text)
        if self.labels:  # "person, traffic light"; empty is no labels
            return self.check([label.strip() for label in text.split(",")] if text else [])
        if self.validate is not None:
            try:
                return self.check(json.loads(text) if text else self.default)
            except ValueError as exc:
                raise SettingError(self.key, f"{self.key} must be JSON ({exc})") from None
        if not text and (self.nullable or self.default is None):
            return None
        try:
            number: float = int(text)  # an int stays an int: 30 days is stored as 30, not 30.0
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise SettingError(self.key, f"{self.key} must be a number ({self.hint()}), got {text!r}") from None
        return self.check(number)

    def hint(self) -> str:
        """The values it takes, in a few characters: ``continuous | motion``, ``0 … 1``."""
        if self.choices is not None:
            return " | ".join(self.choices)
        if self.labels:
            return "labels, comma-separated: person, car"
        if self.validate is not None:
            return "JSON"
        low = "" if self.minimum is None else f"{self.minimum:g}"
        high = "" if self.maximum is None else f"{self.maximum:g}"
        return f"{low} … {high}".strip() if low or high else "any number"

    def format(self, value: Any) -> str:
        """A value for a table cell."""
        if value is None:
            return "default"
        if self.labels:
            return ", ".join(value) if value else "none"
        if isinstance(value, float):
            return f"{value:g}{self.unit}"
        return f"{value}{self.unit}"


SETTINGS: dict[str, SettingSpec] = {spec.key: spec for spec in (
    SettingSpec(RECORDING_MODE, CONTINUOUS, "keep every segment, only those near motion events, or only those near "
                "events with a detected object (objects)", "node",
                "recording", choices=RECORDING_MODES),
    SettingSpec(MOTION_SENSITIVITY, 0.5, "0 = least sensitive, 1 = most", "node", "sensitivity",
                minimum=0, maximum=1),
    SettingSpec(RETENTION_DAYS, None, "keep this camera's footage this many days (null: the store's --max-age)",
                "store", "keep days", minimum=1, maximum=3650, nullable=True, unit="d"),
    SettingSpec(OBJECTS, ["person"], "the object labels to look for on motion events (none: no detection)",
                "store", "objects", labels=True),
    # A threshold below min_score is allowed and simply has no effect: every detection a track counts
    # already scored min_score or more (not checked across the two keys, so either may be changed first).
    SettingSpec(MIN_SCORE, 0.5, "a detection counts only with at least this score", "store", "min score",
                minimum=0, maximum=1),
    SettingSpec(THRESHOLD, 0.7, "an object's median score must reach this to label its event", "store",
                "threshold", minimum=0, maximum=1),
    # Alert rules (store/notify/rules.py, docs/integrations.md): what goes to webhooks, ``alert`` on MQTT.
    SettingSpec(NOTIFY, NOTIFY_OBJECTS, "which events are alerts: none, every motion event, or those with a "
                "detected object (objects)", "store", "notify", choices=NOTIFY_MODES),
    SettingSpec(NOTIFY_LABELS, [], "objects mode: alert only for these labels (none: any label)", "store",
                "notify labels", labels=True),
    SettingSpec(NOTIFY_ZONES, [], "alert only for events in these named zones (none: anywhere)", "store",
                "notify zones", labels=True),
    SettingSpec(NOTIFY_COOLDOWN_S, 60, "no second alert for the same camera and label within this many seconds",
                "store", "cooldown", minimum=0, maximum=86400, unit="s"),
)}


# Store-wide settings: one value for the whole store (kept under camera STORE_WIDE), not per camera.
STORE_SETTINGS: dict[str, SettingSpec] = {spec.key: spec for spec in (
    SettingSpec(WEBHOOKS, [], "where alerts are POSTed: a list of {\"url\": ..., \"secret\"?, \"cameras\"?, "
                "\"labels\"?, \"zones\"?} (docs/integrations.md)", "store", "webhooks", validate=check_webhooks),
)}


def store_spec_of(key: str) -> SettingSpec:
    spec = STORE_SETTINGS.get(key)
    if spec is None:
        raise SettingError(key, f"unknown store-wide setting {key!r}; they are {', '.join(STORE_SETTINGS)} (a "
                           f"camera's settings, {', '.join(SETTINGS)}, need a camera)")
    return spec


def spec_of(key: str) -> SettingSpec:
    spec = SETTINGS.get(key)
    if spec is None:
        raise SettingError(key, f"unknown setting {key!r}; settings are {', '.join(SETTINGS)}")
    return spec


def check_setting(key: str, value: Any) -> Any:
    """The value if ``key`` is a setting that can take it; else SettingError naming the setting."""
    return spec_of(key).check(value)


def value_from_text(key: str, text: str) -> Any:
    """The value of a ``KEY=VALUE`` an operator typed (``sht settings``): JSON, or a bare word such as motion;
    for a list of labels also the form's comma-separated text (objects=person,car). A known setting's value is
    checked here (SettingError); an unknown key's is left for the store to refuse."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    spec = SETTINGS.get(key)
    if spec is not None and spec.labels and isinstance(value, str):
        return spec.parse_text(value)
    return value


def defaults() -> dict[str, Any]:
    """A fresh dict (and fresh lists: a caller may change what it got without changing the specs)."""
    return {key: list(spec.default) if isinstance(spec.default, list) else spec.default
            for key, spec in SETTINGS.items()}


@dataclass(frozen=True)
class CameraSettings:
    """Every runtime setting of one camera, each checked against its spec (defaults for those not given),
    with typed properties for the code that acts on them."""

    values: Mapping[str, Any] = field(default_factory=defaults)

    def __post_init__(self) -> None:
        checked = defaults()
        for key, value in self.values.items():
            checked[key] = check_setting(key, value)
        object.__setattr__(self, "values", checked)

    @classmethod
    def from_json(cls, obj: object, *, ignore_unknown: bool = False) -> CameraSettings:
        """``ignore_unknown``: skip settings this version does not know (a newer store's) instead of refusing."""
        if not isinstance(obj, Mapping):
            raise SettingError("", f"settings must be a JSON object, got {obj!r}")
        if ignore_unknown:
            obj = {k: v for k, v in obj.items() if k in SETTINGS}
        return cls(dict(obj))

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def recording_mode(self) -> str:
        return str(self.values[RECORDING_MODE])

    @property
    def motion_sensitivity(self) -> float:
        return float(self.values[MOTION_SENSITIVITY])

    @property
    def retention_days(self) -> float | None:
        days = self.values[RETENTION_DAYS]
        return None if days is None else float(days)

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(self.values[OBJECTS])

    @property
    def min_score(self) -> float:
        return float(self.values[MIN_SCORE])

    @property
    def threshold(self) -> float:
        return float(self.values[THRESHOLD])

    @property
    def notify(self) -> str:
        return str(self.values[NOTIFY])

    @property
    def notify_labels(self) -> tuple[str, ...]:
        return tuple(self.values[NOTIFY_LABELS])

    @property
    def notify_zones(self) -> tuple[str, ...]:
        return tuple(self.values[NOTIFY_ZONES])

    @property
    def notify_cooldown_s(self) -> float:
        return float(self.values[NOTIFY_COOLDOWN_S])
