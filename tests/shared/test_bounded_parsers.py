"""Parsers refuse what the store cannot represent or afford, before any work starts (issue 14, rows 1, 5, 6)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.protocol.control import parse_control
from shared.protocol.errors import MAX_JSON_DEPTH, ProtocolError, json_depth_exceeds, parse_json, parse_json_object
from shared.protocol.health import NodeHealth
from shared.protocol.ingest import EventRecord, IngestReceiver, SegmentHeader, encode_segment
from shared.protocol.live import parse_live_text
from shared.protocol.query import (
    BUCKETS,
    MAX_TIMELINE_BUCKETS,
    MAX_TIMELINE_INTERVALS,
    RequestError,
    TimeRange,
    bucket_count,
    parse_request,
)
from shared.protocol.times import MAX_TIME_US, check_time
from store.index.timeline import TimelineBuilder


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ---- JSON depth (row 5) ------------------------------------------------------------------------


def test_a_request_nested_30000_deep_is_bad_json_naming_the_limit():
    text = json.dumps({"id": 1, "method": "fleet", "params": {}})[:-1] + ', "x": ' + nested(30_000) + "}"
    assert len(text) < 64 * 1024
    started = time.perf_counter()
    with pytest.raises(ProtocolError) as err:
        parse_request(text)
    assert err.value.code == "bad-json" and str(MAX_JSON_DEPTH) in err.value.message
    assert time.perf_counter() - started < 0.1


def test_nesting_up_to_the_limit_is_fine_and_one_more_is_not():
    assert parse_json(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(ProtocolError, match="more than 32 deep"):
        parse_json(nested(MAX_JSON_DEPTH + 1))
    assert parse_json(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}  # bytes, as ingest headers come


def test_brackets_inside_strings_are_text_not_structure():
    text = json.dumps({"detail": "[" * 1000 + '\\"{{{' * 100, "x": [[["]"]]]})
    assert parse_json_object(text)["x"] == [[["]"]]]


def test_an_unterminated_string_of_escaped_quotes_is_scanned_in_linear_time():
    text = "[" * 40 + '"' + '\\"' * 200_000
    started = time.perf_counter()
    with pytest.raises(ProtocolError):
        parse_json(text)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("parse", [parse_request, parse_control, parse_live_text])
def test_every_wire_parser_refuses_deep_json_as_a_protocol_error(parse):
    with pytest.raises(ProtocolError):
        parse('{"type": "event", "id": 1, "x": ' + nested(30_000) + "}")


def test_ingest_refuses_a_deep_event_with_bad_json():
    receiver = IngestReceiver()
    assert receiver.receive('{"type": "event", "x": ' + nested(30_000) + "}") is None
    (reply,) = receiver.data_to_send()
    assert json.loads(reply)["code"] == "bad-json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(json_values)
def test_the_depth_scan_agrees_with_the_real_depth(value):
    text = json.dumps(value)
    for limit in (0, 1, 2, 5):
        assert json_depth_exceeds(text, limit) == (depth_of(value) > limit)
    if depth_of(value) <= MAX_JSON_DEPTH:
        assert parse_json(text) == json.loads(text)


@given(st.text(alphabet=st.sampled_from('[]{}"\\:,1 ax'), max_size=300) | st.text(max_size=300))
def test_any_text_gives_a_value_or_a_protocol_error_and_nothing_else(text):
    try:
        parse_json_object(text)
    except ProtocolError as exc:
        assert exc.code == "bad-json"


@given(st.binary(max_size=300))
def test_any_bytes_give_a_value_or_a_protocol_error_and_nothing_else(data):
    try:
        parse_json(data)
    except ProtocolError:
        pass


# ---- the time range (row 6) --------------------------------------------------------------------


def header(**changes: object) -> SegmentHeader:
    fields: dict = dict(node="node0", camera="cam0", start_us=10**15, end_us=10**15 + 10**6, frames=5, bytes=10,
                        sha256="0" * 64)
    fields.update(changes)
    return SegmentHeader(**fields)


@pytest.mark.parametrize("field, value", [("start_us", 2**62), ("end_us", MAX_TIME_US + 1), ("start_us", -1)])
def test_an_ingest_header_outside_the_time_range_is_refused_naming_the_field(field, value):
    other = {"start_us": value - 10**6} if field == "end_us" else {"end_us": value + 10**6}
    receiver = IngestReceiver()
    assert receiver.receive(encode_segment(header(**{field: value}, **other), b"x" * 10)) is None
    (reply,) = receiver.data_to_send()
    refusal = json.loads(reply)
    assert refusal["code"] == "bad-field" and repr(field) in refusal["message"]
    assert "2255" in refusal["message"]  # the message says the range


def test_the_last_representable_time_is_accepted():
    header(start_us=MAX_TIME_US - 10**6, end_us=MAX_TIME_US).validate()
    check_time(MAX_TIME_US, "t", "test")
    with pytest.raises(ProtocolError) as err:
        check_time(MAX_TIME_US + 1, "t", "test")
    assert err.value.field == "t"


@pytest.mark.parametrize("field", ["start_us", "end_us", "thumb_us"])
def test_an_event_outside_the_time_range_is_refused_naming_the_field(field):
    times = {"start_us": 10**15, "end_us": 10**15 + 1, "thumb_us": 10**15}
    times[field] = 2**62
    if field == "start_us":
        times["end_us"] = times["thumb_us"] = 2**62
    record = EventRecord("node0", "cam0", times["start_us"], times["end_us"], "motion", thumb_us=times["thumb_us"])
    with pytest.raises(ProtocolError) as err:
        EventRecord.from_json(record.to_json())
    assert err.value.code == "bad-field" and err.value.field == field


@pytest.mark.parametrize("method, params, field", [
    ("segments", {"from_us": 0, "to_us": 2**62}, "to_us"),
    ("events", {"from_us": -1, "to_us": 5}, "from_us"),
    ("thumbnail", {"camera": "cam0", "at_us": MAX_TIME_US + 1}, "at_us"),
    ("export", {"camera": "cam0", "from_us": 2**62, "to_us": 2**62 + 1}, "from_us"),
])
def test_query_times_outside_the_range_are_bad_params_naming_it(method, params, field):
    with pytest.raises(RequestError) as err:
        parse_request(json.dumps({"id": 3, "method": method, "params": params}))
    assert (err.value.code, err.value.field) == ("bad-param", field)
    assert "2255" in err.value.message


def test_an_event_id_past_sqlites_rowids_is_a_bad_param_not_an_internal_error():
    with pytest.raises(RequestError) as err:
        parse_request(json.dumps({"id": 3, "method": "lock_event", "params": {"event_id": 2**64}}))
    assert (err.value.code, err.value.field) == ("bad-param", "event_id")


# ---- timeline buckets and intervals (row 1) ----------------------------------------------------


def test_minute_buckets_from_0_to_now_are_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(RequestError) as err:
        parse_request(json.dumps({"id": 1, "method": "timeline", "params": {
            "camera": "cam0", "bucket": "minute", "from_us": 0, "to_us": int(time.time() * 1e6)}}))
    assert (err.value.code, err.value.field) == ("bad-param", "to_us")
    assert str(MAX_TIMELINE_BUCKETS) in err.value.message and "minute" in err.value.message
    assert time.perf_counter() - started < 0.1


def test_a_day_of_minutes_and_five_years_of_days_are_within_the_cap():
    for bucket, span_us in (("minute", 86_400 * 10**6), ("day", 5 * 365 * 86_400 * 10**6)):
        parse_request(json.dumps({"id": 1, "method": "timeline", "params": {
            "camera": "cam0", "bucket": bucket, "from_us": 10**15, "to_us": 10**15 + span_us,
            "utc_offset_s": 3600}}))


@given(st.integers(0, 2**40), st.integers(1, 2**34), st.sampled_from(list(BUCKETS.values())),
       st.integers(-14 * 3600, 14 * 3600))
def test_the_bucket_count_is_what_the_timeline_builds(lo, length, size, offset_s):
    if length // size > 5000:
        length = size * 5000
    rng = TimeRange(lo, lo + length)
    assert bucket_count(rng, size, offset_s * 10**6) == \
        len(TimelineBuilder(rng.from_us, rng.to_us, size, offset_s * 10**6).segments)


def test_many_short_recordings_give_a_bounded_number_of_intervals_and_exact_buckets():
    lo, hi, cap = 0, 86_400 * 10**6, 100
    spans = [(s, s + 500_000) for s in range(lo, hi, 2_000_000)]  # 43,200 recordings, 1.5 s apart
    builder = TimelineBuilder(lo, hi, BUCKETS["hour"], max_intervals=cap)
    builder.add_spans(spans, lo, hi, count_straddlers=True)
    intervals, segments, recorded = builder.finish()
    assert len(intervals) <= cap and builder.coarsened
    assert sum(segments) == len(spans) and sum(recorded) == 500_000 * len(spans)
    assert intervals[0][0] == lo and intervals[-1][1] == hi - 1_500_000
    assert MAX_TIMELINE_INTERVALS >= 1000


def test_few_recordings_are_not_coarsened():
    builder = TimelineBuilder(0, 10**9, BUCKETS["minute"])
    builder.add_spans([(0, 10**6), (5 * 10**6, 6 * 10**6)], 0, 10**9, count_straddlers=True)
    assert builder.finish()[0] == [[0, 10**6], [5 * 10**6, 6 * 10**6]] and not builder.coarsened



@pytest.mark.parametrize("where", ["camera", "spool"])
def test_a_heartbeats_times_outside_the_range_are_bad_fields(where):
    from tests.shared.test_typed_messages import HEALTH  # a full node health

    health = json.loads(json.dumps(HEALTH))
    if where == "camera":
        health["cameras"]["cam0"]["last_capture_us"] = 2**62
    else:
        health["spool"]["oldest_start_us"] = 2**62
    with pytest.raises(ProtocolError) as err:
        NodeHealth.from_json(health)
    assert err.value.code == "bad-field" and err.value.field is not None
    assert err.value.field.endswith("last_capture_us" if where == "camera" else "oldest_start_us")
