import os
import stat
from http import HTTPStatus

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from shared.auth import (
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


@pytest.mark.parametrize("role, path, ok", [
    ("node", "/ingest", True), ("node", "/control", True), ("node", "/live/cam0", False), ("node", "/api", False),
    ("viewer", "/live/cam0", True), ("viewer", "/api", True), ("viewer", "/ingest", False),
    ("admin", "/api", True), ("admin", "/live/cam0", True), ("admin", "/control", False),
])
def test_roles(role, path, ok):
    key = Ed25519PrivateKey.generate()
    claims = Verifier(key.public_key()).verify(issue_token(key, role, "x", 60)[0])
    if ok:
        authorize(claims, path)
    else:
        with pytest.raises(AuthError) as err:
            authorize(claims, path)
        assert err.value.status == HTTPStatus.FORBIDDEN


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
