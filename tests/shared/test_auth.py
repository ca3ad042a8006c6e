import os
import stat
from http import HTTPStatus

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from shared.auth import (
    DETECTORS,
    MONITORING,
    NODES,
    OPEN,
    VIEWERS,
    AccessControl,
    AuthError,
    FailureLimiter,
    Verifier,
    authorize,
    check_address,
    issue_token,
    parse_allowlist,
    token_from_request,
)
from store.admin.keys import KeyStore


def test_tokens_verify_offline_with_the_public_key():
    key = Ed25519PrivateKey.generate()
    token, claims = issue_token(key, "viewer", "alice", 60)
    assert Verifier(key.public_key()).verify(token) == claims
    assert claims.role == "viewer" and claims.subject == "alice"


@pytest.mark.parametrize("token, reason", [(None, "no token"), ("", "no token"), ("abc", "invalid token")])
def test_missing_or_garbage_tokens_are_401(token, reason):
    with pytest.raises(AuthError) as err:
        Verifier(Ed25519PrivateKey.generate().public_key()).verify(token)
    assert err.value.status == HTTPStatus.UNAUTHORIZED and reason in err.value.reason


def test_expired_foreign_and_revoked_tokens_are_refused():
    key = Ed25519PrivateKey.generate()
    expired, _ = issue_token(key, "viewer", "bob", 10, now=1000)
    foreign, _ = issue_token(Ed25519PrivateKey.generate(), "admin", "mallory", 60)
    revoked, claims = issue_token(key, "viewer", "carol", 60)
    verifier = Verifier(key.public_key(), lambda: {claims.token_id})
    for token, reason in ((expired, "expired"), (foreign, "invalid"), (revoked, "revoked")):
        with pytest.raises(AuthError, match=reason):
            verifier.verify(token)


@given(st.text(max_size=200))
def test_any_string_is_a_clear_auth_error_or_a_valid_token(text):
    verifier = Verifier(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(AuthError):
        verifier.verify(text)


@pytest.mark.parametrize("role, audience, ok", [
    ("node", NODES, True), ("node", VIEWERS, False),
    ("viewer", VIEWERS, True), ("viewer", NODES, False),
    ("admin", VIEWERS, True), ("admin", NODES, False),
    ("detector", VIEWERS, True), ("detector", DETECTORS, True), ("detector", NODES, False),
    ("viewer", DETECTORS, False), ("admin", DETECTORS, False), ("node", DETECTORS, False),
])
def test_roles(role, audience, ok):
    key = Ed25519PrivateKey.generate()
    claims = Verifier(key.public_key()).verify(issue_token(key, role, "x", 60)[0])
    if ok:
        authorize(claims, audience, "/x")
    else:
        with pytest.raises(AuthError) as err:
            authorize(claims, audience, "/x")
        assert err.value.status == HTTPStatus.FORBIDDEN and f"a {role} token may not use /x" in err.value.reason


def test_token_from_header_or_query():
    assert token_from_request("/live/cam0", "Bearer abc") == "abc"
    assert token_from_request("/live/cam0?token=xyz", None) == "xyz"
    assert token_from_request("/live/cam0", None) is None
    assert token_from_request("/api?token=q", "Basic zzz") == "q"


def test_allowlists():
    allow = parse_allowlist(["viewer=192.168.1.0/24,10.0.0.5", "node=127.0.0.1/32"])
    check_address(allow, "viewer", "192.168.1.77")
    check_address(allow, "admin", "8.8.8.8")  # no list for admin: open
    for role, addr in (("viewer", "192.168.2.1"), ("node", "10.0.0.5")):
        with pytest.raises(AuthError, match="not allowed"):
            check_address(allow, role, addr)
    with pytest.raises(ValueError, match="ROLE=CIDR"):
        parse_allowlist(["viewers=1.2.3.4"])
    with pytest.raises(ValueError):
        parse_allowlist(["viewer=300.1.1.1"])


def test_failure_limiter_blocks_a_noisy_address_for_a_while():
    now = [0.0]
    limiter = FailureLimiter(limit=3, window_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert not limiter.blocked("1.2.3.4")
        limiter.record("1.2.3.4")
    assert limiter.blocked("1.2.3.4") and not limiter.blocked("5.6.7.8")
    now[0] = 11
    assert not limiter.blocked("1.2.3.4")


class Handshakes:
    """An ``AccessControl`` with a real key, a revocation list and a hand-turned clock."""

    def __init__(self, allow: tuple[str, ...] = ()) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.revoked: set[str] = set()
        self.now = [0.0]
        self.access = AccessControl(Verifier(self.key.public_key(), lambda: self.revoked), parse_allowlist(allow),
                                    FailureLimiter(limit=10, window_s=60, clock=lambda: self.now[0]))

    def token(self, role: str, **kwargs) -> str:
        return issue_token(self.key, role, "x", 60, **kwargs)[0]

    def status(self, token: str | None, audience=VIEWERS, address: str = "10.0.0.1") -> int:
        try:
            self.access.check("/api", "/api", audience, f"Bearer {token}" if token else None, address)
        except AuthError as exc:
            return exc.status
        return 101


def test_wrong_roles_never_lock_out_a_valid_token():
    h = Handshakes()
    node = h.token("node")
    assert [h.status(node) for _ in range(50)] == [403] * 50
    assert h.status(h.token("viewer")) == 101
    assert h.status("garbage") == 401  # wrong roles were not counted


def test_bad_credentials_block_bad_credentials_only():
    h = Handshakes()
    assert [h.status("garbage") for _ in range(12)] == [401] * 10 + [429] * 2
    assert h.status(h.token("viewer")) == 101  # a genuine token is never locked out
    assert h.status(h.token("node")) == 403  # nor told 429: it is genuine, only the wrong role
    assert h.status(None) == 429 and h.status("garbage", address="10.0.0.2") == 401  # per address
    h.now[0] = 61
    assert h.status("garbage") == 401  # the block ends with the window


@pytest.mark.parametrize("kind", ["missing", "garbage", "forged", "expired", "revoked"])
def test_every_kind_of_bad_credential_counts(kind):
    h = Handshakes()
    revoked, claims = issue_token(h.key, "viewer", "x", 60)
    h.revoked.add(claims.token_id)
    bad = {"missing": None, "garbage": "abc", "forged": issue_token(Ed25519PrivateKey.generate(), "viewer", "x", 60)[0],
           "expired": h.token("viewer", now=1000), "revoked": revoked}[kind]
    assert [h.status(bad) for _ in range(11)] == [401] * 10 + [429]


def test_an_address_off_the_allowlist_is_403_and_not_counted():
    h = Handshakes(allow=("viewer=192.168.0.0/16",))
    viewer = h.token("viewer")
    assert [h.status(viewer) for _ in range(20)] == [403] * 20
    assert h.status(viewer, address="192.168.1.2") == 101
    assert h.status(h.token("admin")) == 101


def test_tokenless_endpoints_and_auth_off():
    h = Handshakes()
    assert h.status(None, OPEN) == 101 and h.status(None, MONITORING) == 101
    h.access.open_monitoring = False  # --closed-health: any role's token, none is refused
    assert h.status(None, MONITORING) == 401 and h.status(h.token("node"), MONITORING) == 101
    assert h.status(None, OPEN) == 101
    h.access.verifier = None  # --no-auth
    assert h.status(None, NODES) == 101


def test_key_store_creates_a_private_key_0600_issues_and_revokes(tmp_path):
    keys = KeyStore(tmp_path)
    token, claims = keys.issue("viewer", "dave", 3600)
    assert stat.S_IMODE(os.stat(keys.private_path).st_mode) == 0o600
    verifier = keys.verifier()
    assert verifier.verify(token).subject == "dave"
    assert keys.revoke(token) == claims.token_id
    with pytest.raises(AuthError, match="revoked"):
        verifier.verify(token)
    with pytest.raises(KeyError, match="no token"):
        keys.revoke("deadbeef")
    assert [t["subject"] for t in keys.issued()] == ["dave"]
