"""The Stores screen's reading of /health answers: the lease line for each mix of stores, old stores' answers."""

from __future__ import annotations

from console.store_health import StoreView, is_current, lease_line


def pg(url: str, holds: bool) -> StoreView:
    return StoreView.from_health(url, {"index": {"backend": "postgresql", "maintenance": holds}})


def test_one_holder_among_stores_on_postgresql() -> None:
    line, style = lease_line([pg("http://a:8100", False), pg("http://b:8100", True)])
    assert (line, style) == ("maintenance lease: b:8100", "ok")


def test_no_holder_and_two_holders_are_warnings() -> None:
    line, style = lease_line([pg("http://a:8100", False), pg("http://b:8100", False)])
    assert style == "warn" and "no store answering holds the maintenance lease" in line
    line, style = lease_line([pg("http://a:8100", True), pg("http://b:8100", True)])
    assert style == "warn" and "different PostgreSQL indexes" in line


def test_stores_on_sqlite_share_nothing_and_down_ones_are_counted() -> None:
    sqlite = StoreView.from_health("http://a:8100", {"index": {"backend": "sqlite", "maintenance": True}})
    assert sqlite.lease == "own index"
    line, style = lease_line([sqlite, StoreView.down("http://b:8100", "refused")])
    assert style == "warn" and line.endswith("1 of 2 not answering")
    assert lease_line([StoreView.down("http://b:8100", "refused")]) == ("no store answers (1 in the list)", "warn")


def test_a_store_older_than_these_fields_shows_what_it_says() -> None:
    old = StoreView.from_health("http://a:8100", {"service": "store", "uptime_s": 3.0, "nodes": {}})
    assert old.up and old.index is None and old.lease == "-" and old.replica is None and old.nodes == 0


def test_the_link_is_matched_whatever_the_scheme() -> None:
    view = StoreView.down("ws://nas1:8100", "x")
    assert is_current(view, "http://nas1:8100") and not is_current(view, "http://nas2:8100")
    assert not is_current(view, None)
