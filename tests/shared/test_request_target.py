"""The request-target splitter every server uses: never raises, and agrees with the URL grammar."""

from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from shared.request_target import query_values, split_target


def test_path_query_and_fragment():
    assert split_target("/live/c0?format=fmp4&stream=sub#x") == ("/live/c0", "format=fmp4&stream=sub")
    assert split_target("/live/c0#frag?format=fmp4") == ("/live/c0", "")
    assert split_target("/api") == ("/api", "")
    assert query_values("/live/c0?token=a&token=b", "token") == ["a", "b"]
    assert query_values("/live/c0", "token") == []


def test_targets_urlsplit_refuses_are_split_all_the_same():
    assert split_target("//[x?token=t") == ("//[x", "token=t")
    assert query_values("//[x?token=t", "token") == ["t"]


URL_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="?#")  # as sent on the wire


@given(st.text(alphabet=URL_CHARS, max_size=40).map(lambda p: "/" + p.lstrip("/")),
       st.text(alphabet=URL_CHARS, max_size=40))
def test_agrees_with_urlsplit_on_single_slash_paths(path, rest):
    target = path + "?" + rest
    parts = urlsplit(target)
    assert split_target(target) == (parts.path, parts.query)


@given(st.text(max_size=80))
def test_never_raises(target):
    path, query = split_target(target)
    assert "?" not in path and "#" not in path and "#" not in query
