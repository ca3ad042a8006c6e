"""Security with real processes: tokens and roles at the handshake, revocation, TLS, allowlists, hostile input."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from shared.auth import issue_token
from shared.protocol.ingest import SegmentHeader, encode_segment, parse_reply, sha256_hex
from shared.protocol.query import Failure, QueryClient, Result
from shared.security import bearer
from store.admin.keys import KeyStore
from tests.store.real_segments import real_mp4
from tests.system.conftest import Processes, free_port, get_json, tokens


def status_of(url: str, token: str | None = None, ssl_context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """HTTP status and body of a WebSocket handshake attempt (or the handshake's success as 101)."""

    async def attempt() -> tuple[int, str]:
        try:
            async with connect(url, additional_headers=bearer(token), ssl=ssl_context, open_timeout=5):
                return 101, ""
        except websockets.InvalidStatus as exc:
            return exc.response.status_code, exc.response.body.decode()

    return asyncio.run(attempt())


def start_system(processes: Processes, tmp: Path, *store_args: str, node_args: tuple[str, ...] = (),
                 scheme: str = "http", ca: str | None = None):
    store_port, node_port = free_port(), free_port()
    root = tmp / "store"
    toks = tokens(root)
    store = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(store_port),
                            *store_args)
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    _wait(f"{scheme}://127.0.0.1:{store_port}/health", store, ctx)
    ws = "wss" if scheme == "https" else "ws"
    node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                           "--store", f"{ws}://127.0.0.1:{store_port}", "--spool", str(tmp / "spool"),
                           "--segment-seconds", "1", "--size", "160x120", "--fps", "5",
                           "--camera", "cam0=synthetic", *node_args, token=toks["node"])
    _wait(f"{scheme}://127.0.0.1:{node_port}/health", node, ctx)
    return store_port, node_port, root, toks


def _wait(url: str, proc: subprocess.Popen, ctx: ssl.SSLContext | None) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1, context=ctx):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_tokens_roles_and_revocation_at_the_handshake(processes, tmp_path):
    store_port, node_port, root, toks = start_system(processes, tmp_path)
    api, live = f"ws://127.0.0.1:{store_port}/api", f"ws://127.0.0.1:{node_port}/live/cam0"
    assert get_json(f"http://127.0.0.1:{store_port}/health")["service"] == "store"  # /health is open
    code, body = status_of(api)
    assert code == 401 and "no token" in body
    assert status_of(api, "not.a.token")[0] == 401
    code, body = status_of(api, toks["node"])
    assert code == 403 and "node token may not use /api" in body
    expired, _ = issue_token(KeyStore(root).private_key(), "viewer", "late", 10, now=time.time() - 100)
    code, body = status_of(api, expired)
    assert code == 401 and "expired" in body
    assert status_of(api, toks["viewer"])[0] == 101
    assert status_of(f"ws://127.0.0.1:{store_port}/ingest", toks["viewer"])[0] == 403
    # The node checks viewer tokens offline with the store's public key.
    deadline = time.monotonic() + 10
    while status_of(live, toks["viewer"])[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.2)  # until the node has fetched the store's key
    assert status_of(live, toks["viewer"])[0] == 101
    assert status_of(live)[0] == 401 and status_of(live, toks["node"])[0] == 403
    # Revoke a viewer token: the store refuses it at once, and the node once the store has told it.
    victim, claims = KeyStore(root).issue("viewer", "leaver", 3600)
    assert status_of(live, victim)[0] == 101

    async def revoke_while_watching() -> tuple[subprocess.CompletedProcess, int | None, int | None]:
        """A stream and an API connection already open with the token are ended by its revocation."""
        async with connect(live, additional_headers=bearer(victim)) as stream, \
                connect(api, additional_headers=bearer(victim)) as query:
            await stream.recv()  # the init
            out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "sht", "token", "revoke", "--root",
                                                           str(root), claims.token_id], capture_output=True, text=True)
            codes = []
            for ws in (stream, query):
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                except websockets.ConnectionClosed as exc:
                    codes.append(exc.rcvd.code if exc.rcvd else None)
            return out, codes[0], codes[1]

    out, stream_code, query_code = asyncio.run(revoke_while_watching())
    assert out.returncode == 0 and claims.token_id in out.stdout
    assert stream_code == 1008 and query_code == 1008, (stream_code, query_code)
    code, body = status_of(api, victim)
    assert code == 401 and "revoked" in body
    deadline = time.monotonic() + 10
    while status_of(live, victim)[0] == 101 and time.monotonic() < deadline:
        time.sleep(0.2)
    code, body = status_of(live, victim)
    assert code == 401 and "revoked" in body
    assert status_of(live, toks["viewer"])[0] == 101  # others are unaffected
    logs = (tmp_path / "logs" / "store.log").read_text()
    assert "refused /api from 127.0.0.1" in logs


def test_repeated_failures_from_one_address_are_rate_limited(processes, tmp_path):
    store_port, _, _, toks = start_system(processes, tmp_path)
    api = f"ws://127.0.0.1:{store_port}/api"
    codes = [status_of(api, "bad")[0] for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429
    code, body = status_of(api, "bad")
    assert code == 429 and "too many" in body  # bad credentials wait out the penalty
    assert status_of(api, toks["viewer"])[0] == 101  # a genuine token never does


def test_a_valid_token_is_never_locked_out(store):
    """A misconfigured client retrying with the wrong role, and a flood of garbage, from the operator's address."""
    url, root = store
    toks = tokens(root)
    api = url.replace("http", "ws") + "/api"

    async def hammer() -> tuple[list[int], list[int], Result | Failure]:
        async def attempt(token: str) -> int:
            try:
                async with connect(api, additional_headers=bearer(token), open_timeout=5):
                    return 101
            except websockets.InvalidStatus as exc:
                return exc.response.status_code

        wrong_role = [await attempt(toks["node"]) for _ in range(50)]
        garbage = [await attempt("garbage") for _ in range(50)]
        async with connect(api, additional_headers=bearer(toks["viewer"]), open_timeout=5) as ws:
            client = QueryClient()
            client.request("segments", from_us=0, to_us=2**53)  # the whole time range
            for out in client.data_to_send():
                await ws.send(out)
            reply = client.receive(await asyncio.wait_for(ws.recv(), 10))
        return wrong_role, garbage, reply

    wrong_role, garbage, reply = asyncio.run(hammer())
    still = status_of(api, "garbage")
    assert wrong_role == [403] * 50  # genuine tokens of the wrong role: not counted
    assert garbage == [401] * 10 + [429] * 40
    assert isinstance(reply, Result) and reply.result["items"] == [], reply  # the viewer's search, at once
    assert still[0] == 429 and "too many" in still[1]


def test_allowlist_refuses_other_addresses(processes, tmp_path):
    store_port, _, _, toks = start_system(processes, tmp_path, "--allow", "viewer=10.0.0.0/8")
    code, body = status_of(f"ws://127.0.0.1:{store_port}/api", toks["viewer"])
    assert code == 403 and "not allowed for role viewer" in body
    assert status_of(f"ws://127.0.0.1:{store_port}/api", toks["admin"])[0] == 101  # no list for admins


def make_certificates(directory: Path) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sht test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def test_tls_on_every_listener_and_verification_on_every_client(processes, tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    tls = ("--tls-cert", cert, "--tls-key", key)
    store_port, node_port, root, toks = start_system(processes, tmp_path, *tls, node_args=(*tls, "--ca", ca),
                                                     scheme="https", ca=ca)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _stored(root):
        time.sleep(0.2)
    assert _stored(root), "the node uploaded over wss:// and verified the store's certificate"
    verified = ssl.create_default_context(cafile=ca)
    assert status_of(f"wss://127.0.0.1:{node_port}/live/cam0", toks["viewer"], verified)[0] in (101, 503)
    search = subprocess.run([sys.executable, "-m", "sht", "search", "--store", f"https://127.0.0.1:{store_port}",
                             "--ca", ca, "--token", toks["viewer"], "--from", "5m ago", "--json"],
                            capture_output=True, text=True)
    assert search.returncode == 0 and json.loads(search.stdout)
    untrusted = subprocess.run([sys.executable, "-m", "sht", "search", "--store", f"https://127.0.0.1:{store_port}",
                                "--token", toks["viewer"]], capture_output=True, text=True)
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    old = ssl.create_default_context(cafile=ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"https://127.0.0.1:{store_port}/health", context=old, timeout=5)


def _stored(root: Path) -> bool:
    return any((root / "segments").rglob("*.mp4")) if (root / "segments").exists() else False


def test_hostile_input_is_refused_and_changes_nothing(processes, tmp_path):
    store_port, _, root, toks = start_system(processes, tmp_path)
    data = real_mp4(2)
    good = SegmentHeader(node="node0", camera="cam9", start_us=10**15, end_us=10**15 + 200_000, frames=2,
                         bytes=len(data), sha256=sha256_hex(data))
    broken = bytearray(data)
    broken[len(broken) // 2:] = bytes(len(broken) - len(broken) // 2)
    forged = SegmentHeader(node="node7", camera="cam9", start_us=10**15 + 5 * 10**6, end_us=10**15 + 6 * 10**6,
                           frames=2, bytes=len(data), sha256=sha256_hex(data))
    bad_media = SegmentHeader(node="node0", camera="cam9", start_us=10**15 + 10**6, end_us=10**15 + 2 * 10**6,
                              frames=2, bytes=len(broken), sha256=sha256_hex(bytes(broken)))

    async def attack() -> list[str]:
        codes = []
        async with connect(f"ws://127.0.0.1:{store_port}/ingest", additional_headers=bearer(toks["node"]),
                           max_size=2**20) as ws:
            for message in (b"\x00" * 64, "hello", json.dumps({"type": "event"}),
                            encode_segment(bad_media, bytes(broken)),
                            encode_segment(good, data)[:-5] + b"xxxxx", encode_segment(forged, data)):
                await ws.send(message)
                codes.append(parse_reply(await ws.recv()))
            await ws.send(encode_segment(good, data))
            codes.append(parse_reply(await ws.recv()))
        async with connect(f"ws://127.0.0.1:{store_port}/api", additional_headers=bearer(toks["admin"])) as ws:
            await ws.send("x" * 200_000)  # far beyond the API's request limit
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            codes.append(f"closed {closed.value.rcvd.code if closed.value.rcvd else None}")
        return codes

    replies = asyncio.run(attack())
    assert [getattr(r, "code", None) for r in replies[:6]] == [
        "bad-magic", "bad-json", "missing-field", "bad-media", "checksum-mismatch", "node-mismatch"]
    assert replies[6].__class__.__name__ == "Ack" and replies[7] == "closed 1009"
    files = list((root / "segments").rglob("*.mp4"))
    assert [p.name for p in files if "cam9" in str(p)] == [f"{10**15}.mp4"], "only the good segment was stored"
    assert get_json(f"http://127.0.0.1:{store_port}/health")["service"] == "store"  # still serving
