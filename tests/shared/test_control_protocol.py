"""The /control messages: a hello says whether the node serves TLS, so its fleet URL has the right scheme."""

from __future__ import annotations

import json

import pytest

from shared.protocol.control import Hello, parse_control
from shared.protocol.errors import ProtocolError


def test_hello_round_trips_with_tls_and_older_nodes_mean_plain():
    hello = Hello("node0", 8443, ("cam0",), tls=True)
    assert parse_control(hello.serialize()) == hello
    older = json.dumps({"type": "hello", "node": "node0", "port": 8000, "cameras": ["cam0"]})
    assert parse_control(older) == Hello("node0", 8000, ("cam0",), tls=False)
    with pytest.raises(ProtocolError, match="tls must be true or false"):
        parse_control(json.dumps({"type": "hello", "node": "node0", "port": 1, "cameras": [], "tls": "yes"}))
