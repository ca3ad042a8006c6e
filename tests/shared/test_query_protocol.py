import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.errors import ProtocolError
from shared.protocol.query import (
    Chunk,
    Failure,
    ListParams,
    Progress,
    QueryClient,
    QueryServer,
    RequestError,
    Result,
    parse_request,
)


def request(method, **params):
    return json.dumps({"id": 7, "method": method, "params": params})


def test_valid_request_is_typed():
    req = parse_request(request("segments", cameras=["cam0"], from_us=10, to_us=20, limit=5))
    assert req.id == 7 and req.method == "segments"
    assert isinstance(req.params, ListParams)
    assert req.params.cameras == ("cam0",) and req.params.range.to_us == 20 and req.params.limit == 5


@pytest.mark.parametrize("method, params, field", [
    ("segments", {"from_us": 10}, "to_us"),
    ("segments", {"from_us": 10, "to_us": 5}, "to_us"),
    ("segments", {"from_us": 0, "to_us": 5, "cameras": ["../x"]}, "cameras"),
    ("segments", {"from_us": 0, "to_us": 5, "limit": 0}, "limit"),
    ("timeline", {"camera": "cam0", "from_us": 0, "to_us": 5, "bucket": "week"}, "bucket"),
    ("thumbnail", {"camera": "cam0", "at_us": 5, "width": 5}, "width"),
    ("export", {"camera": "cam0", "from_us": 0, "to_us": 25 * 3600 * 10**6}, "to_us"),
    ("lock_event", {"event_id": "x"}, "event_id"),
    ("events", {"from_us": 0, "to_us": 5, "labels": "person"}, "labels"),
    ("events", {"from_us": 0, "to_us": 5, "labels": [""]}, "labels"),
    ("events", {"from_us": 0, "to_us": 5, "labels": ["x" * 65]}, "labels"),
    ("events", {"from_us": 0, "to_us": 5, "labels": ["tab\there"]}, "labels"),
    ("events", {"from_us": 0, "to_us": 5, "labels": [7]}, "labels"),
    ("events", {"from_us": 0, "to_us": 5, "labels": ["person"] * 65}, "labels"),
    ("snapshot", {}, "event"),
    ("snapshot", {"event": 0}, "event"),
    ("snapshot", {"event": True}, "event"),
    ("set_setting", {"camera": "cam0", "key": "recording_mode"}, "value"),
    ("notifications", {"limit": 0}, "limit"),
    ("notifications", {"limit": 501}, "limit"),
    ("notifications", {"target": ""}, "target"),
    ("notifications", {"target": "x" * 65}, "target"),
    ("notifications", {"target": "webhook:\n"}, "target"),
    ("bogus", {}, "method"),
])
def test_bad_requests_name_the_field(method, params, field):
    with pytest.raises(RequestError) as err:
        parse_request(request(method, **params))
    assert err.value.request_id == 7 and err.value.field == field


def test_events_take_labels_each_once_in_the_order_asked():
    req = parse_request(request("events", from_us=0, to_us=5, labels=["person", "traffic light", "person"]))
    assert req.params.labels == ("person", "traffic light")
    assert parse_request(request("events", from_us=0, to_us=5)).params.labels == ()
    assert parse_request(request("snapshot", event=12)).params.event == 12


@given(st.text(max_size=200))
def test_garbage_requests_give_protocol_errors_only(text):
    try:
        parse_request(text)
    except ProtocolError:
        pass


@given(st.dictionaries(st.sampled_from(["id", "method", "params"]),
                       st.one_of(st.integers(), st.text(max_size=10), st.none(),
                                 st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=5),
                                                 max_size=4))))
def test_structured_garbage_gives_protocol_errors_only(obj):
    try:
        parse_request(json.dumps(obj))
    except ProtocolError:
        pass


def test_client_and_server_talk():
    client, server = QueryClient(), QueryServer()
    rid = client.request("thumbnail", camera="cam0", at_us=5, width=64)
    (message,) = client.data_to_send()
    req = server.receive(message)
    assert req is not None and req.params.width == 64
    server.progress(req.id, 1, 2)
    server.chunk(req.id, b"\xff\xd8jpeg")
    server.result(req.id, {"bytes": 6})
    events = [client.receive(m) for m in server.data_to_send()]
    assert events == [Progress(rid, 1, 2), Chunk(rid, b"\xff\xd8jpeg"), Result(rid, {"bytes": 6})]
    assert not client.pending
    with pytest.raises(ProtocolError, match="not pending"):
        client.receive(json.dumps({"id": rid, "result": 1}))


def test_server_answers_bad_requests_with_addressed_errors():
    server = QueryServer()
    assert server.receive(request("segments", from_us=5)) is None
    assert server.receive("not json") is None
    first, second = (json.loads(m) for m in server.data_to_send())
    assert first["id"] == 7 and first["error"]["field"] == "to_us"
    assert second["id"] is None and second["error"]["code"] == "bad-json"
    client = QueryClient()
    assert isinstance(client.receive(json.dumps(second)), Failure)
