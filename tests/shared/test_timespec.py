import calendar
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.timespec import TimeSpecError, format_local, parse_duration, parse_size, parse_time

NOW = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)  # 2026-11-27 05:00 in Seoul
S = 1_000_000
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def us(*args: int, tz: timezone = UTC) -> int:
    """Independent reference: microseconds since the epoch of a wall time in ``tz``."""
    dt = datetime(*args, tzinfo=tz)
    return calendar.timegm(dt.utctimetuple()) * S + dt.microsecond


def pin_zone(monkeypatch: pytest.MonkeyPatch, name: str, standard_offset_hours: int):
    """Make ``name`` the local zone for one test, then restore the previous one."""
    monkeypatch.setenv("TZ", name)
    time.tzset()
    assert time.timezone == -standard_offset_hours * 3600, f"zone {name} is not installed"
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def seoul(monkeypatch):
    yield from pin_zone(monkeypatch, "Asia/Seoul", 9)


@pytest.fixture
def new_york(monkeypatch):
    yield from pin_zone(monkeypatch, "America/New_York", -5)


KST = timezone(timedelta(hours=9))


@pytest.mark.parametrize("text, expected", [
    ("2026-11-26T08:00:00Z", us(2026, 11, 26, 8)),
    ("2026-11-26T08:00Z", us(2026, 11, 26, 8)),
    ("2026-11-26t08:00z", us(2026, 11, 26, 8)),
    ("2026-11-26T08:00+09:00", us(2026, 11, 25, 23)),
    ("2026-11-26 08:00-05:30", us(2026, 11, 26, 13, 30)),
    ("2026-11-26T08:00:00.123456+00:00", us(2026, 11, 26, 8, 0, 0, 123456)),
    ("2026-11-26T08:00:00.5Z", us(2026, 11, 26, 8, 0, 0, 500000)),
    ("  2026-11-26T08:00Z ", us(2026, 11, 26, 8)),
    ("1969-12-31T23:59:59.999999Z", -1),
])
def test_iso_with_zone(text, expected):
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text, expected", [
    ("2026-11-26T08:00", us(2026, 11, 26, 8, tz=KST)),
    ("2026-11-26 08:00:30", us(2026, 11, 26, 8, 0, 30, tz=KST)),
    ("2026-11-26  08:00:00.25", us(2026, 11, 26, 8, 0, 0, 250000, tz=KST)),
    ("2026-11-26", us(2026, 11, 26, tz=KST)),
])
def test_iso_without_zone_is_local(seoul, text, expected):
    assert parse_time(text, now=NOW) == expected


def test_local_time_follows_daylight_saving(new_york):
    assert parse_time("2026-07-01T12:00") == us(2026, 7, 1, 16)
    assert parse_time("2026-12-01 12:00") == us(2026, 12, 1, 17)


def test_now():
    assert parse_time("now", now=NOW) == parse_time(" NOW ", now=NOW) == us(2026, 11, 26, 20)
    assert abs(parse_time("now") - time.time_ns() // 1000) < 5 * S


def test_naive_now_is_local(seoul):
    assert parse_time("now", now=datetime(2026, 11, 27, 5)) == us(2026, 11, 26, 20)


@pytest.mark.parametrize("text, seconds", [
    ("10m ago", 600), ("2h ago", 7200), ("90s ago", 90), ("3d ago", 3 * 86400), ("1w ago", 604800),
    ("10 min ago", 600), ("2 hours ago", 7200), ("1 hour ago", 3600), ("3 hrs ago", 10800), ("1 hr ago", 3600),
    ("5 secs ago", 5), ("1 second ago", 1), ("45 seconds ago", 45), ("1 minute ago", 60), ("5 mins ago", 300),
    ("1 day ago", 86400), ("2 days ago", 172800), ("2 weeks ago", 1209600), ("1 sec ago", 1),
    ("  10M   AGO ", 600), ("0s ago", 0),
])
def test_relative(text, seconds):
    assert parse_time(text, now=NOW) == us(2026, 11, 26, 20) - seconds * S


@pytest.mark.parametrize("text, expected", [
    ("today", us(2026, 11, 27, tz=KST)),
    ("Today 08:00", us(2026, 11, 27, 8, tz=KST)),
    ("today 8", us(2026, 11, 27, 8, tz=KST)),
    ("today 08:00:00.5", us(2026, 11, 27, 8, 0, 0, 500000, tz=KST)),
    ("yesterday", us(2026, 11, 26, tz=KST)),
    ("yesterday 23:30", us(2026, 11, 26, 23, 30, tz=KST)),
    ("yesterday  23:30:15", us(2026, 11, 26, 23, 30, 15, tz=KST)),
])
def test_today_and_yesterday_are_local(seoul, text, expected):
    assert parse_time(text, now=NOW) == expected  # NOW is already the 27th in Seoul


@pytest.mark.parametrize("text, expected", [
    ("@0", 0), ("@1700000000", 1_700_000_000 * S), ("@1700000000.5", 1_700_000_000 * S + 500000),
    ("@-1.25", -1_250_000), ("@1.000001", 1_000_001),
])
def test_unix_seconds(text, expected):
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "tomorow 8", "tomorrow", "10x ago", "ago", "10m", "-10m ago", "10.5m ago", "10ms ago", "now now",
    "2026-13-01", "2026-11-31", "2026-00-10", "99999-01-01", "2026-11-26T24:30", "2026-11-26T08:00+25:00",
    "today 25:00", "today 08:61", "today 08:00:00.1234567", "today 08:00Z", "yesterday at 8",
    "@", "@1e9", "@" + "9" * 30, "@" + "9" * 5000, "9" * 5000 + "s ago", "1" * 9, "999999999999 w ago",
    "0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00", "\x00", "2026-11-26\x00", "2026-11-26x08:00",
    "2026-11-26\u00e908:00", "2026-11-26T08:00 UTC",
], ids=lambda text: repr(text)[:40])
def test_rejected(text):
    with pytest.raises(TimeSpecError) as err:
        parse_time(text, now=NOW)
    assert repr(text) in str(err.value) and "'10m ago'" in str(err.value) and "ISO 8601" in str(err.value)


def test_error_is_a_value_error():
    with pytest.raises(ValueError, match=r"^'tomorow 8' is not a time: use ISO 8601 \(2026-11-26T08:00"):
        parse_time("tomorow 8")


offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets)


@given(aware, st.sampled_from(["T", " "]))
def test_iso_of_any_aware_datetime_is_exact(dt, sep):
    expected = calendar.timegm(dt.utctimetuple()) * S + dt.microsecond
    assert parse_time(dt.isoformat(sep=sep), now=NOW) == expected
    if dt.utcoffset() == timedelta(0):
        assert parse_time(dt.replace(tzinfo=None).isoformat() + "Z", now=NOW) == expected


def parses_or_rejects(text: str) -> None:
    try:
        assert isinstance(parse_time(text, now=NOW), int)
    except TimeSpecError:
        pass


@given(st.text())
def test_any_text_parses_or_is_rejected(text):
    parses_or_rejects(text)


@given(st.text(alphabet="0123456789-:.+@TZ tWagosmhdnwyer", max_size=30))
def test_time_like_text_parses_or_is_rejected(text):
    parses_or_rejects(text)


@fixture_ok
@given(st.integers(min_value=us(1900, 1, 1), max_value=us(2200, 1, 1)))
def test_format_local_round_trips(seoul, t):
    text = format_local(t)
    assert len(text) == 19 and text[10] == " "
    assert parse_time(text, now=NOW) == t - t % S


def test_format_local(seoul):
    assert format_local(0) == "1970-01-01 09:00:00"
    assert format_local(us(2026, 11, 26, 14, 59, 59, 999999)) == "2026-11-26 23:59:59"


@pytest.mark.parametrize("text, seconds", [
    ("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 1209600), ("0s", 0),
    ("2 weeks", 1209600), ("1 day", 86400), (" 12H ", 43200), ("10min", 600), ("3 hours", 10800),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds * S


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "-1d", "1.5h", "30d ago", "1h30m", "9" * 5000 + "s",
                                  "999999999999999w"])
def test_parse_duration_rejects(text):
    with pytest.raises(TimeSpecError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text, size", [
    ("500G", 500 * 1024**3), ("1.5T", 3 * 1024**4 // 2), ("200M", 200 * 1024**2), ("10k", 10240),
    ("4096", 4096), ("0", 0), ("500GB", 500 * 1024**3), ("500GiB", 500 * 1024**3), ("1.5 tib", 3 * 1024**4 // 2),
    ("10 KB", 10240), ("512b", 512), ("512B", 512), (" 2m ", 2 * 1024**2),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "1.5", "-1G", "10P", "10 kbit", "1iB", "1..5G", "1e3", "9" * 5000])
def test_parse_size_rejects(text):
    with pytest.raises(TimeSpecError, match="is not a size"):
        parse_size(text)


@given(st.text())
def test_durations_and_sizes_parse_or_are_rejected(text):
    for parse in (parse_duration, parse_size):
        try:
            assert parse(text) >= 0
        except TimeSpecError:
            pass
