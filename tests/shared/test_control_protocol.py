"""The /control messages: a hello says whether the node serves TLS, so its fleet URL has the right scheme."""

from __future__ import annotations

import json

import pytest

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


def test_a_node_says_it_understands_event_labels_and_an_older_hello_does_not():
    assert Hello("node0", 8000, ("cam0",)).version == CONTROL_VERSION >= EVENT_LABEL_VERSION
    older = json.dumps({"type": "hello", "node": "node0", "port": 8000, "cameras": ["cam0"]})
    assert parse_control(older).version == 1  # type: ignore[union-attr]
