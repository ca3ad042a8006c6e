"""The /control messages: a hello says whether the node serves TLS, so its fleet URL has the right scheme; an
event_label carries a label or null (the verdict "analysed, none found"), nothing else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.control import CONTROL_VERSION, EVENT_LABEL_VERSION, EventLabel, Hello, parse_control
from shared.protocol.errors import ProtocolError


def test_hello_round_trips_with_tls_and_older_nodes_mean_plain():
    hello = Hello("node0", 8443, ("cam0",), tls=True)
    assert parse_control(hello.serialize()) == hello
    older = json.dumps({"type": "hello", "node": "node0", "port": 8000, "cameras": ["cam0"]})
    assert parse_control(older) == Hello("node0", 8000, ("cam0",), version=1, tls=False)
    with pytest.raises(ProtocolError, match="tls must be true or false"):
        parse_control(json.dumps({"type": "hello", "node": "node0", "port": 1, "cameras": [], "tls": "yes"}))


def test_an_event_label_round_trips_and_a_bad_one_names_its_field():
    message = EventLabel("cam0", 1_700_000_000_000_000, "traffic light")
    assert json.loads(message.serialize()) == {"type": "event_label", "camera": "cam0",
                                               "start_us": 1_700_000_000_000_000, "label": "traffic light"}
    assert parse_control(message.serialize()) == message
    good = json.loads(message.serialize())
    for change, field, text in [({"start_us": -1}, "start_us", "start_us must be a time"),
                                ({"start_us": 1.5}, "start_us", "start_us must be a time"),
                                ({"start_us": True}, "start_us", "start_us must be a time"),
                                ({"label": ""}, "label", "a label cannot be empty"),
                                ({"label": 7}, "label", "a label must be a string"),
                                ({"label": "x" * 65}, "label", "1 to 64 characters")]:
        with pytest.raises(ProtocolError, match=text) as caught:
            parse_control(json.dumps({**good, **change}))
        assert (caught.value.code, caught.value.field) == ("bad-field", field)
    with pytest.raises(ProtocolError, match="camera id"):
        parse_control(json.dumps({**good, "camera": "../etc"}))
    with pytest.raises(ProtocolError, match="lacks field 'label'") as caught:
        parse_control(json.dumps({"type": "event_label", "camera": "cam0", "start_us": 1}))
    assert caught.value.code == "missing-field"


def test_a_null_verdict_round_trips_and_is_not_a_missing_label():
    verdict = EventLabel("cam0", 1_700_000_000_000_000, None)  # analysed, none of the camera's objects
    assert json.loads(verdict.serialize()) == {"type": "event_label", "camera": "cam0",
                                               "start_us": 1_700_000_000_000_000, "label": None}
    assert parse_control(verdict.serialize()) == verdict
    with pytest.raises(ProtocolError, match="or null") as caught:
        parse_control(json.dumps({**json.loads(verdict.serialize()), "label": False}))
    assert (caught.value.code, caught.value.field) == ("bad-field", "label")


labels = st.none() | st.text(st.characters(blacklist_characters=",", blacklist_categories=("C", "Z")),
                             min_size=1, max_size=64)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@given(st.integers(0, 2**52), labels)
def test_any_verdict_round_trips(start_us: int, label: str | None) -> None:
    message = EventLabel("cam0", start_us, label)
    assert parse_control(message.serialize()) == message


@given(st.sampled_from(["camera", "start_us", "label"]), json_values, st.booleans())
def test_an_event_label_with_one_field_changed_is_read_the_same_way_or_names_what_is_wrong(
        key: str, value: object, drop: bool) -> None:
    good = {"type": "event_label", "camera": "cam0", "start_us": 1_700_000_000_000_000, "label": "person"}
    data = {k: v for k, v in good.items() if k != key} | ({} if drop else {key: value})
    try:
        message = parse_control(json.dumps(data))
    except ProtocolError as exc:
        assert exc.code == ("missing-field" if drop else "bad-field")
        return
    assert not drop and isinstance(message, EventLabel)
    assert (message.camera, message.start_us, message.label) == (data["camera"], data["start_us"], data["label"])
    assert parse_control(message.serialize()) == message


def test_a_node_says_it_understands_event_labels_and_an_older_hello_does_not():
    assert Hello("node0", 8000, ("cam0",)).version == CONTROL_VERSION >= EVENT_LABEL_VERSION
    older = json.dumps({"type": "hello", "node": "node0", "port": 8000, "cameras": ["cam0"]})
    assert parse_control(older).version == 1  # type: ignore[union-attr]
