"""Listener and client security options shared by the node and the store: auth, TLS, allowlists."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from shared.auth import AccessControl, Verifier, parse_allowlist

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class SecurityOptions:
    auth: bool = True
    allow: tuple[str, ...] = ()  # ROLE=CIDR[,CIDR]
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_min: str = "1.3"
    open_health: bool = True  # /health and /metrics without a token
    key_file: str | None = None  # the store's signing key from this file (stores sharing PostgreSQL, --key-file)

    def validate(self) -> None:
        parse_allowlist(self.allow)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_min not in TLS_VERSIONS:
            raise ValueError(f"--tls-min must be one of {', '.join(TLS_VERSIONS)}, got {self.tls_min!r}")
        for path in (self.tls_cert, self.tls_key):
            if path and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")
        if self.key_file and not Path(self.key_file).is_file():
            raise ValueError(f"--key-file {self.key_file} does not exist (make one with `openssl genpkey -algorithm "
                             "ed25519 -out FILE`, then give every store the same file)")

    def server_ssl(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.tls_min]
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def access(self, verifier: Verifier | None) -> AccessControl:
        return AccessControl(verifier if self.auth else None, parse_allowlist(self.allow),
                             open_monitoring=self.open_health)


def client_ssl(url: str, ca: str | None) -> ssl.SSLContext | None:
    """Verification for wss:// and https:// clients: the system's CAs, or the given CA file."""
    if not url.startswith(("wss://", "https://")):
        return None
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    return context


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
