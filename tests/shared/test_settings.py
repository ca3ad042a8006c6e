"""The one settings spec (shared/settings.py): validation, typed CameraSettings, and the control message."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.control import SettingsPush, parse_control
from shared.protocol.errors import ProtocolError
from shared.settings import (
    CONTINUOUS,
    MAX_LABELS,
    MIN_SCORE,
    MOTION,
    MOTION_SENSITIVITY,
    NOTIFY,
    NOTIFY_COOLDOWN_S,
    NOTIFY_LABELS,
    NOTIFY_OBJECTS,
    NOTIFY_ZONES,
    OBJECTS,
    OBJECTS_MODE,
    RECORDING_MODE,
    RETENTION_DAYS,
    SETTINGS,
    THRESHOLD,
    CameraSettings,
    SettingError,
    check_setting,
    defaults,
    label_problem,
    value_from_text,
)

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=6)


def test_every_setting_is_declared_once_with_a_default_it_accepts() -> None:
    for key, spec in SETTINGS.items():
        assert spec.key == key and spec.description and spec.label
        assert spec.applied_by in ("node", "store")
        assert spec.check(spec.default) == spec.default
    assert SETTINGS[RECORDING_MODE].choices == (CONTINUOUS, MOTION, OBJECTS_MODE)
    assert defaults() == {RECORDING_MODE: CONTINUOUS, MOTION_SENSITIVITY: 0.5, RETENTION_DAYS: None,
                          OBJECTS: ["person"], MIN_SCORE: 0.5, THRESHOLD: 0.7, NOTIFY: NOTIFY_OBJECTS,
                          NOTIFY_LABELS: [], NOTIFY_ZONES: [], NOTIFY_COOLDOWN_S: 60}
    assert [spec.kind for spec in SETTINGS.values()] == ["choice", "number", "number", "labels", "number", "number",
                                                         "choice", "labels", "labels", "number"]


@pytest.mark.parametrize(("key", "value", "message"), [
    (RECORDING_MODE, "sometimes", "recording_mode must be one of continuous, motion, objects"),
    (RECORDING_MODE, None, "recording_mode cannot be null"),
    (MOTION_SENSITIVITY, 3, "motion_sensitivity must be between 0 and 1"),
    (MOTION_SENSITIVITY, True, "motion_sensitivity must be a number"),
    (MOTION_SENSITIVITY, "0.5", "motion_sensitivity must be a number"),
    (MOTION_SENSITIVITY, math.nan, "motion_sensitivity must be a number"),
    (RETENTION_DAYS, 0, "retention_days must be between 1 and 3650"),
    (RETENTION_DAYS, math.inf, "retention_days must be a number"),
    ("colour", 1, "unknown setting 'colour'"),
    (OBJECTS, "person", r"objects must be a list of labels such as \["),
    (OBJECTS, None, "objects cannot be null"),
    (OBJECTS, ["person", 3], "objects: a label must be a string, got 3"),
    (OBJECTS, ["person", ""], "objects: a label cannot be empty"),
    (OBJECTS, ["x" * 65], "objects: a label must be 1 to 64 characters, got 65"),
    (OBJECTS, [" car"], "without a comma or a space at either end"),
    (OBJECTS, ["car,bus"], "without a comma"),
    (OBJECTS, ["car\n"], "printable"),
    (OBJECTS, ["car", "person", "car"], "objects lists 'car' more than once"),
    (OBJECTS, [f"l{i}" for i in range(MAX_LABELS + 1)], "objects may list at most 32 labels, got 33"),
    (MIN_SCORE, 1.5, "min_score must be between 0 and 1"),
    (THRESHOLD, -0.1, "threshold must be between 0 and 1"),
])
def test_a_bad_value_names_its_setting(key: str, value: Any, message: str) -> None:
    with pytest.raises(SettingError, match=message) as caught:
        check_setting(key, value)
    assert caught.value.key == key


def test_parse_text_reads_what_an_operator_types() -> None:
    days, sensitivity = SETTINGS[RETENTION_DAYS], SETTINGS[MOTION_SENSITIVITY]
    assert days.parse_text(" 30 ") == 30 and isinstance(days.parse_text("30"), int)
    assert days.parse_text("") is None and days.parse_text("1.5") == 1.5
    assert sensitivity.parse_text("0.8") == 0.8
    with pytest.raises(SettingError, match=r"motion_sensitivity must be a number \(0 … 1\), got ''"):
        sensitivity.parse_text("")
    with pytest.raises(SettingError, match=r"retention_days must be a number \(1 … 3650\)"):
        days.parse_text("a month")
    assert SETTINGS[RECORDING_MODE].parse_text("motion") == MOTION


def test_labels_are_typed_comma_separated_and_shown_the_same_way() -> None:
    objects = SETTINGS[OBJECTS]
    assert objects.parse_text(" person, traffic light ,car") == ["person", "traffic light", "car"]
    assert objects.parse_text("") == [] and objects.parse_text("   ") == []
    assert objects.check(("person", "car")) == ["person", "car"]  # a tuple is a list in JSON
    assert objects.format(["person", "car"]) == "person, car" and objects.format([]) == "none"
    assert "comma-separated" in objects.hint()
    with pytest.raises(SettingError, match="a label cannot be empty"):
        objects.parse_text("person,,car")
    with pytest.raises(SettingError, match="'person' more than once"):
        objects.parse_text("person, person")
    assert label_problem("traffic light") is None and label_problem("Ünïcode 人") is None


def test_a_key_value_from_the_command_line() -> None:
    assert value_from_text(OBJECTS, "person,car") == ["person", "car"]
    assert value_from_text(OBJECTS, '["person", "traffic light"]') == ["person", "traffic light"]
    assert value_from_text(OBJECTS, "person") == ["person"] and value_from_text(OBJECTS, '""') == []
    assert value_from_text(RECORDING_MODE, "objects") == "objects" and value_from_text(MIN_SCORE, "0.6") == 0.6
    assert value_from_text(RETENTION_DAYS, "null") is None and value_from_text("colour", "red") == "red"
    with pytest.raises(SettingError, match="objects lists 'car' more than once"):
        value_from_text(OBJECTS, "car,car")


@given(st.lists(st.text(st.characters(blacklist_characters=","), min_size=1, max_size=64), max_size=MAX_LABELS,
                unique=True))
def test_labels_round_trip_through_the_form_text(labels: list[str]) -> None:
    objects = SETTINGS[OBJECTS]
    try:
        checked = objects.check(labels)
    except SettingError as exc:
        assert exc.key == OBJECTS and any(label_problem(label) for label in labels)
        return
    assert objects.parse_text(objects.format(checked) if checked else "") == labels


def test_camera_settings_fill_defaults_and_read_typed() -> None:
    settings = CameraSettings.from_json({RECORDING_MODE: MOTION, RETENTION_DAYS: 7, OBJECTS: ["car", "person"],
                                         THRESHOLD: 0.8})
    assert settings.recording_mode == MOTION and settings.motion_sensitivity == 0.5
    assert settings.retention_days == 7.0 and settings[RETENTION_DAYS] == 7
    assert settings.objects == ("car", "person") and settings.min_score == 0.5 and settings.threshold == 0.8
    assert settings.to_json() == {RECORDING_MODE: MOTION, MOTION_SENSITIVITY: 0.5, RETENTION_DAYS: 7,
                                  OBJECTS: ["car", "person"], MIN_SCORE: 0.5, THRESHOLD: 0.8,
                                  NOTIFY: NOTIFY_OBJECTS, NOTIFY_LABELS: [], NOTIFY_ZONES: [], NOTIFY_COOLDOWN_S: 60}
    assert settings.notify == NOTIFY_OBJECTS and settings.notify_labels == () and settings.notify_zones == ()
    assert settings.notify_cooldown_s == 60.0
    assert CameraSettings() == CameraSettings.from_json({})
    CameraSettings().to_json()[OBJECTS].append("cat")  # a caller's copy: the defaults stay as they are
    assert CameraSettings().objects == ("person",) and SETTINGS[OBJECTS].default == ["person"]


def test_camera_settings_refuse_unknown_settings_unless_told_to_skip_them() -> None:
    with pytest.raises(SettingError, match="unknown setting 'night_mode'") as caught:
        CameraSettings.from_json({"night_mode": "on"})
    assert caught.value.key == "night_mode"
    assert CameraSettings.from_json({"night_mode": "on"}, ignore_unknown=True) == CameraSettings()
    with pytest.raises(SettingError, match="must be a JSON object"):
        CameraSettings.from_json([1, 2])


@given(st.dictionaries(st.sampled_from([*SETTINGS, "other"]), json_values, max_size=4))
def test_camera_settings_from_any_json_either_validates_or_names_the_bad_setting(obj: dict[str, Any]) -> None:
    try:
        settings = CameraSettings.from_json(obj)
    except SettingError as exc:
        assert exc.key in obj and exc.key in str(exc)
        return
    for key, value in settings.to_json().items():
        assert SETTINGS[key].check(value) == value
        assert value == obj.get(key, SETTINGS[key].default)
    assert CameraSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


@given(st.sampled_from(list(SETTINGS)), st.text(max_size=12))
def test_parse_text_never_raises_anything_but_a_setting_error(key: str, text: str) -> None:
    try:
        value = SETTINGS[key].parse_text(text)
    except SettingError as exc:
        assert exc.key == key
        return
    assert SETTINGS[key].check(value) == value


def test_settings_push_carries_typed_settings_with_an_unchanged_wire_format() -> None:
    push = SettingsPush("cam0", CameraSettings({RECORDING_MODE: MOTION}))
    assert json.loads(push.serialize()) == {"type": "settings", "camera": "cam0", "settings": {
        "recording_mode": "motion", "motion_sensitivity": 0.5, "retention_days": None,
        "objects": ["person"], "min_score": 0.5, "threshold": 0.7, "notify": "objects", "notify_labels": [],
        "notify_zones": [], "notify_cooldown_s": 60}}
    assert parse_control(push.serialize()) == push
    newer_store = json.dumps({"type": "settings", "camera": "cam0",
                              "settings": {"recording_mode": "motion", "night_mode": "on"}})
    assert parse_control(newer_store) == push  # what this node does not know is not its business
    with pytest.raises(ProtocolError, match="motion_sensitivity must be between 0 and 1") as caught:
        parse_control(json.dumps({"type": "settings", "camera": "cam0", "settings": {"motion_sensitivity": 2}}))
    assert (caught.value.code, caught.value.field) == ("bad-field", "settings.motion_sensitivity")
