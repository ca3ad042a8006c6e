"""``shared.store_list``: parsing ``--store`` lists and the rotation policy (fail over at once, back off per store)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.store_list import StoreListError, StoreRotation, parse_store_list, same_store_key

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True)
urls = st.builds(lambda scheme, host, port: f"{scheme}://{host}:{port}",
                 st.sampled_from(["ws", "wss", "http", "https"]), hosts, st.integers(1, 65535))
distinct_urls = st.lists(urls, min_size=1, max_size=6, unique_by=same_store_key)


@given(distinct_urls)
def test_a_comma_list_and_a_json_list_give_the_same_stores(stores):
    assert parse_store_list(",".join(stores)) == tuple(stores)
    assert parse_store_list(stores) == tuple(stores)
    assert parse_store_list(" , ".join(s + "/" for s in stores)) == tuple(stores)  # spaces and a trailing /


@given(distinct_urls, st.data())
def test_a_store_given_twice_is_refused_naming_both_items(stores, data):
    at = data.draw(st.integers(0, len(stores)))
    again = data.draw(st.sampled_from(stores))
    twin = again.replace("http://", "ws://").replace("https://", "wss://")  # the same store by another scheme
    with pytest.raises(StoreListError, match=r"is the same store as item \d+: give each store once"):
        parse_store_list(",".join([*stores[:at], twin, *stores[at:]]))


@given(distinct_urls, st.data())
def test_an_empty_item_is_refused(stores, data):
    at = data.draw(st.integers(0, len(stores)))
    text = ",".join([*stores[:at], data.draw(st.sampled_from(["", " "])), *stores[at:]])
    with pytest.raises(StoreListError, match=rf"--store: item {at + 1} of {len(stores) + 1} is empty"):
        parse_store_list(text)


@pytest.mark.parametrize(("value", "says"), [
    ("", "item 1 of 1 is empty"),
    ("ws://a:8100,,ws://b:8100", "item 2 of 3 is empty"),
    ("ws://a:8100,", "item 2 of 2 is empty"),
    ("ftp://a:8100", "must start with ws://, wss://, http:// or https://"),
    ("ws://:8100", "names no host"),
    ("ws://a:notaport", "port that is not a number"),
    ("ws://a:0", "port 0"),
    ("ws://user:pw@a:8100", "tokens go in --token"),
    ("ws://a:8100?x=1", "query or fragment"),
    ("ws://a b:8100", "holds a space"),
    ("ws://nas:8100,http://NAS:8100/", "same store as item 1"),
    ("wss://nas,https://nas:443", "same store as item 1"),
])
def test_bad_lists_are_refused_with_a_reason(value, says):
    with pytest.raises(StoreListError, match=says):
        parse_store_list(value)


def test_json_items_must_be_single_url_strings():
    with pytest.raises(StoreListError, match="item 2 is 5, not a URL string"):
        parse_store_list(["ws://a:1", 5], "store")  # type: ignore[list-item]
    with pytest.raises(StoreListError, match="holds a comma: give one URL per item"):
        parse_store_list(["ws://a:1,ws://b:1"], "store")
    with pytest.raises(StoreListError, match="store is empty"):
        parse_store_list([], "store")


def test_a_bare_host_and_port_is_a_ws_store_as_before():
    assert parse_store_list("nas:8100") == ("nas:8100",)
    assert same_store_key("nas:8100") == same_store_key("http://nas:8100") == "ws://nas:8100"
    assert same_store_key("ws://nas:8100") != same_store_key("wss://nas:8100")  # TLS or not: another listener


def test_the_second_store_is_used_at_once_when_the_first_fails():
    rotation = StoreRotation(["A", "B"], jitter=lambda c: c)
    assert rotation.choose(0.0) == ("A", 0.0)
    rotation.succeeded("A")
    rotation.failed("A", 10.0, "refused")
    assert rotation.choose(10.0) == ("B", 0.0) and rotation.switches == 1
    rotation.succeeded("B")
    assert rotation.choose(99.0) == ("B", 0.0)  # sticky: A answering again does not take it back
    rotation.failed("B", 100.0, "closed")
    assert rotation.choose(100.0) == ("A", 0.0)  # A's backoff from its failure at 10 s is long over
    rotation.failed("A", 100.0, "refused")  # A has not answered since: its second failure in a row, 0.5 s
    url, delay = rotation.choose(100.0)
    assert (url, delay) == ("B", 0.25)  # both backing off: B's 0.25 s ends before A's 0.5 s
    assert rotation.all_failing


def test_a_failure_of_a_store_that_is_no_longer_current_moves_nothing():
    rotation = StoreRotation(["A", "B", "C"], jitter=lambda c: c)
    rotation.failed("A", 0.0, "closed")  # the upload link saw A die: B is next
    assert rotation.choose(0.0) == ("B", 0.0)
    rotation.failed("A", 0.1, "closed")  # the control link saw it too, a moment later
    assert rotation.current == "B" and rotation.choose(0.1) == ("B", 0.0)
    assert [s.failures for s in rotation.status(0.1)] == [2, 0, 0]


def test_with_one_store_it_backs_off_like_before():
    rotation = StoreRotation(["A"], initial_s=0.25, maximum_s=10.0, jitter=lambda c: c)
    delays = []
    for attempt in range(8):
        url, delay = rotation.choose(float(attempt * 100))
        rotation.failed(url, float(attempt * 100), "refused")
        delays.append(rotation.choose(float(attempt * 100))[1])
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


ops = st.lists(st.tuples(st.sampled_from(["fail", "ok", "tick"]), st.integers(0, 4), st.floats(0, 3)),
               max_size=60)


@settings(max_examples=300)
@given(st.integers(1, 5), ops)
def test_the_rotation_always_picks_a_ready_store_when_there_is_one(n, steps):
    stores = [f"ws://s{i}:8100" for i in range(n)]
    rotation = StoreRotation(stores, jitter=lambda c: c)
    now = 0.0
    for op, which, dt in steps:
        now += dt
        url = stores[which % n]
        if op == "fail":
            was_current = rotation.current == url
            rotation.failed(url, now, "x")
            if was_current and n > 1:
                assert rotation.current != url  # a failed store never goes first again while there are others
        elif op == "ok":
            rotation.succeeded(url)
            assert rotation.choose(now) == (url, 0.0)
        chosen, delay = rotation.choose(now)
        status = {s.url: s for s in rotation.status(now)}
        assert chosen == rotation.current and status[chosen].current
        if any(s.retry_in_s == 0 for s in status.values()):
            assert delay == 0 and status[chosen].retry_in_s == 0
        else:
            assert delay == pytest.approx(min(s.retry_in_s for s in status.values()), abs=1e-9)
        assert 0 <= delay <= rotation.maximum_s + 1e-9
        assert sorted(rotation.order(now)) == sorted(stores) and rotation.order(now)[0] == chosen


@given(st.integers(2, 6), st.integers(1, 40))
def test_when_nothing_answers_every_store_is_tried_in_turn(n, rounds):
    stores = [f"ws://s{i}:8100" for i in range(n)]
    rotation = StoreRotation(stores, jitter=lambda c: c)
    now, tried = 0.0, []
    for _ in range(rounds * n):
        url, delay = rotation.choose(now)
        now += delay
        tried.append(url)
        rotation.failed(url, now, "refused")
    for start in range(0, len(tried) - n + 1):
        assert sorted(tried[start:start + n]) == sorted(stores)  # no store starves, none is tried twice as often
