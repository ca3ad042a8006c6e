"""The route table: one declaration per endpoint, and the 404 text and role table read from it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.auth import MONITORING, NODES, OPEN, VIEWERS
from shared.request_target import BadTarget
from shared.server.routes import Route, RouteTable, endpoint_path, http_route, websocket_route


def respond(connection, request):  # pragma: no cover - never called here
    raise AssertionError


async def session(connection, claims):  # pragma: no cover - never called here
    raise AssertionError


def store_like() -> RouteTable:
    return RouteTable([
        http_route("/health", MONITORING, respond),
        http_route("/key", OPEN, respond),
        http_route("/", VIEWERS, respond),
        websocket_route("/api", VIEWERS, session, 64 * 1024),
        websocket_route("/ingest", NODES, session, 256 * 2**20),
        websocket_route("/live/{camera}", VIEWERS, session, 64 * 1024),
    ])


def test_the_404_text_lists_every_declared_endpoint():
    table = store_like()
    assert table.not_found("/x") == "no endpoint '/x'; try /health, /key, /, /api, /ingest or /live/{camera}"
    relay = RouteTable([http_route("/health", MONITORING, respond)], note="this is a relay")
    assert relay.not_found("/api") == "no endpoint '/api'; this is a relay: try /health"


def test_the_role_table_is_the_declarations():
    roles = store_like().roles()
    assert roles["/ingest"].roles == ("node",) and roles["/api"].roles == ("viewer", "admin", "detector")
    assert roles["/live/{camera}"] == VIEWERS and roles["/key"].tokenless == "always"
    assert list(roles) == ["/health", "/key", "/", "/api", "/ingest", "/live/{camera}"]


@pytest.mark.parametrize("path, declared", [
    ("/live/cam0", "/live/{camera}"), ("/live/", "/live/{camera}"), ("/live/a/b", "/live/{camera}"),
    ("/api", "/api"), ("/", "/"), ("/health", "/health"),
    ("/live", None), ("/api/", None), ("/apix", None), ("", None), ("/x", None),
])
def test_exact_paths_and_prefixes(path, declared):
    route = store_like().match(path)
    assert (route.path if route else None) == declared


def test_exact_paths_win_over_a_prefix():
    table = RouteTable([websocket_route("/live/{camera}", VIEWERS, session, 1),
                        http_route("/live/index", OPEN, respond)])
    assert table.match("/live/index").path == "/live/index" and table.match("/live/c0").path == "/live/{camera}"


@pytest.mark.parametrize("target", ["/live/c0", "/live/c0?x", "/live/c0#frag", "/live/c0?format=fmp4#f",
                                    "/live/c0?", "/live/c0#"])
def test_query_and_fragment_are_never_part_of_the_path(target):
    assert endpoint_path(target) == "/live/c0"
    assert store_like().match(endpoint_path(target)).path == "/live/{camera}"


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#"), max_size=40),
       st.text(max_size=40), st.sampled_from(["?", "#"]))
def test_anything_after_a_query_or_fragment_mark_is_ignored(path, rest, mark):
    def path_or_refusal(target: str) -> str:
        try:
            return endpoint_path(target)
        except BadTarget:  # a bad %-escape or a dot segment: the shell answers 400
            return "refused"

    target = "/" + path
    assert path_or_refusal(target + mark + rest) == path_or_refusal(target)
    store_like().match(path_or_refusal(target + mark + rest))  # never raises


@pytest.mark.parametrize("make, error", [
    (lambda: Route("/x", OPEN), "either"),
    (lambda: Route("/x", OPEN, respond=respond, session=session, max_message_bytes=1), "either"),
    (lambda: Route("/x", OPEN, session=session), "max message size"),
    (lambda: Route("/x", OPEN, respond=respond, check=lambda c, r: None), "WebSocket routes"),
    (lambda: Route("x", OPEN, respond=respond), "starts with /"),
    (lambda: Route("/live/{camera}/x", OPEN, respond=respond), "placeholder ends it"),
    (lambda: RouteTable([http_route("/a", OPEN, respond), http_route("/a", OPEN, respond)]), "twice"),
])
def test_bad_declarations_are_refused(make, error):
    with pytest.raises(ValueError, match=error):
        make()


def test_the_listener_limit_is_the_largest_route_limit():
    assert store_like().max_message_bytes == 256 * 2**20
