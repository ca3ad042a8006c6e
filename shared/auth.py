"""Who may do what: roles, signed tokens, address allowlists. No I/O here.

Tokens are JWTs signed by the store with Ed25519 (``EdDSA``); anyone holding
the store's public key (every node) verifies them offline, so a viewer can
watch a node directly without the node asking the store. Claims: ``sub``
(who), ``role`` (node | viewer | admin | detector), ``exp``, ``iat``, ``jti`` (for
revocation), ``iss`` = ``sht-store``.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.request_target import query_values

ISSUER = "sht-store"
ALGORITHM = "EdDSA"
ROLES = ("node", "viewer", "admin", "detector")
ADMIN_METHODS = frozenset({"set_setting", "lock_event"})  # /api methods that change things


class AuthError(Exception):
    """A request refused at the handshake: ``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


@dataclass(frozen=True)
class Claims:
    subject: str
    role: str
    expires: int
    token_id: str


@dataclass(frozen=True)
class Audience:
    """Who may use an endpoint: the roles whose tokens it takes, and whether it needs a token at all.

    ``tokenless``: "never" (a token of one of ``roles``), "always" (``/key``), or "monitoring"
    (``/health``, ``/metrics``: open unless the listener runs with ``--closed-health``, then any role).
    """

    roles: tuple[str, ...] = ROLES
    tokenless: Literal["never", "always", "monitoring"] = "never"


OPEN = Audience(tokenless="always")
MONITORING = Audience(tokenless="monitoring")
NODES = Audience(("node",))
VIEWERS = Audience(("viewer", "admin", "detector"))  # admin and detector may do everything a viewer may
DETECTORS = Audience(("detector",))  # ``sht detect --store`` workers: /detect on the store


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def issue_token(key: Ed25519PrivateKey, role: str, subject: str, ttl_s: int,
                now: float | None = None) -> tuple[str, Claims]:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if ttl_s <= 0:
        raise ValueError("a token's lifetime must be positive")
    issued = int(now if now is not None else time.time())
    claims = Claims(subject, role, issued + ttl_s, secrets.token_hex(8))
    token = jwt.encode({"iss": ISSUER, "sub": subject, "role": role, "iat": issued, "exp": claims.expires,
                        "jti": claims.token_id}, key, algorithm=ALGORITHM)
    return token, claims


class Verifier:
    """Checks tokens against the store's public key and a revocation list."""

    def __init__(self, public_key: Ed25519PublicKey, revoked: Callable[[], Iterable[str]] = tuple) -> None:
        self.public_key = public_key
        self.revoked = revoked

    def verify(self, token: str | None) -> Claims:
        if not token:
            raise AuthError(HTTPStatus.UNAUTHORIZED, "no token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN "
                            "(make one with `sht token create`)")
        try:
            payload = jwt.decode(token, self.public_key, algorithms=[ALGORITHM], issuer=ISSUER,
                                 options={"require": ["exp", "iat", "sub", "jti", "iss"]})
        except jwt.ExpiredSignatureError:
            raise AuthError(HTTPStatus.UNAUTHORIZED, "token expired: make a new one with `sht token create`") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(HTTPStatus.UNAUTHORIZED, f"invalid token ({exc}); is it from this store?") from None
        role, jti = payload.get("role"), str(payload["jti"])
        if role not in ROLES:
            raise AuthError(HTTPStatus.UNAUTHORIZED, f"token has an unknown role {role!r}")
        if jti in set(self.revoked()):
            raise AuthError(HTTPStatus.UNAUTHORIZED, f"token {jti} was revoked")
        return Claims(str(payload["sub"]), role, int(payload["exp"]), jti)


def authorize(claims: Claims, audience: Audience, endpoint: str) -> None:
    """403 for a genuine token of a role the endpoint does not take."""
    if claims.role not in audience.roles:
        raise AuthError(HTTPStatus.FORBIDDEN, f"a {claims.role} token may not use {endpoint} "
                        f"(needs {' or '.join(audience.roles)})")


def token_from_request(path: str, authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer`` header, else from ``?token=`` (browsers can't set headers)."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    values = query_values(path, "token")
    return values[0] if values else None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowlist(specs: Iterable[str]) -> dict[str, list[Network]]:
    """``ROLE=CIDR[,CIDR…]`` flags into {role: networks}; roles without a flag are open to any address."""
    out: dict[str, list[Network]] = {}
    for spec in specs:
        role, sep, cidrs = spec.partition("=")
        if not sep or role not in ROLES:
            raise ValueError(f"--allow {spec!r} must look like ROLE=CIDR[,CIDR], ROLE one of {', '.join(ROLES)}")
        try:
            out.setdefault(role, []).extend(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(","))
        except ValueError as exc:
            raise ValueError(f"--allow {spec!r}: {exc}") from None
    return out


def check_address(allowlist: dict[str, list[Network]], role: str, address: str) -> None:
    networks = allowlist.get(role)
    if networks is None:
        return
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise AuthError(HTTPStatus.FORBIDDEN, f"unparseable peer address {address!r}") from None
    if not any(ip in net for net in networks):
        raise AuthError(HTTPStatus.FORBIDDEN, f"address {address} is not allowed for role {role}")


@dataclass
class FailureLimiter:
    """Bad credentials per address: after ``limit`` within ``window_s``, refuse bad ones outright for a while."""

    limit: int = 10
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, address: str) -> bool:
        recent = self._recent(address)
        return len(recent) >= self.limit

    def record(self, address: str) -> None:
        self._recent(address).append(self.clock())

    def _recent(self, address: str) -> deque[float]:
        horizon = self.clock() - self.window_s
        if len(self.failures) > 10_000:  # bound memory under an address-spraying flood: forget the quiet ones
            for other in [a for a, q in self.failures.items() if not q or q[-1] < horizon]:
                del self.failures[other]
        q = self.failures.setdefault(address, deque())
        while q and q[0] < horizon:
            q.popleft()
        return q


@dataclass
class AccessControl:
    """Everything a server checks at the handshake, in one place (no I/O).

    The lockout counts only bad credentials (missing, garbage, forged, expired, revoked, another store's):
    a genuine token is never refused by it, so one misconfigured client (a viewer token used for ingest,
    retrying) cannot lock out everyone else behind the same address. A genuine token of the wrong role, or
    from an address its role's allowlist does not hold, is a 403 and is not counted.
    """

    verifier: Verifier | None  # None: authentication is off (``--no-auth``)
    allowlist: dict[str, list[Network]] = field(default_factory=dict)
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    open_monitoring: bool = True  # /health and /metrics without a token (off with ``--closed-health``)

    def needs_token(self, audience: Audience) -> bool:
        if audience.tokenless == "always":
            return False
        return audience.tokenless == "never" or not self.open_monitoring

    def check(self, target: str, endpoint: str, audience: Audience, authorization: str | None,
              address: str) -> Claims | None:
        """Claims of the caller of ``endpoint`` (None when it needs no token, or auth is off); raises ``AuthError``.

        ``target`` is the request target as sent (it may carry ``?token=``).
        """
        if self.verifier is None or not self.needs_token(audience):
            return None
        try:
            claims = self.verifier.verify(token_from_request(target, authorization))
        except AuthError:
            if self.limiter.blocked(address):
                raise AuthError(HTTPStatus.TOO_MANY_REQUESTS, "too many refused attempts from this address; "
                                "wait a minute and check the token") from None
            self.limiter.record(address)
            raise
        authorize(claims, audience, endpoint)
        check_address(self.allowlist, claims.role, address)
        return claims
