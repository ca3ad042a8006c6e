"""The server shell through real sockets on loopback: routing, the handshake's checks, sizes, revocation."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect

from shared.auth import MONITORING, NODES, VIEWERS, AccessControl, Verifier, issue_token
from shared.httpjson import error_response, json_response
from shared.security import bearer
from shared.server.routes import RouteTable, endpoint_path, http_route, websocket_route
from shared.server.shell import ServerShell


async def raw_get(port: int, target: str) -> tuple[int, str]:
    """A plain GET with the target sent exactly as given (clients drop fragments; a hostile one need not)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    reply = await reader.read()
    writer.close()
    head, _, body = reply.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def handshake(url: str, token: str | None = None) -> int:
    try:
        async with connect(url, additional_headers=bearer(token), open_timeout=5):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


class Echo:
    """A shell with an HTTP route, two WebSocket routes and a check, and what each session saw."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.revoked: set[str] = set()
        self.sessions: list[tuple[str, str | None]] = []
        self.uncheckable: str | None = None
        self.shell = ServerShell(RouteTable([
            http_route("/health", MONITORING, lambda c, _: json_response(c, HTTPStatus.OK, {"ok": True})),
            websocket_route("/echo", VIEWERS, self.echo, 1024),
            websocket_route("/upload", NODES, self.echo, 100_000),
            websocket_route("/live/{camera}", VIEWERS, self.echo, 1024, check=self.check),
        ]), AccessControl(Verifier(self.key.public_key(), lambda: self.revoked)), lambda: self.uncheckable)

    def token(self, role: str) -> tuple[str, str]:
        token, claims = issue_token(self.key, role, role + "-1", 60)
        return token, claims.token_id

    def check(self, connection, request):
        camera = endpoint_path(request.path).removeprefix("/live/")
        return None if camera == "c0" else error_response(connection, HTTPStatus.NOT_FOUND, f"no camera {camera!r}")

    async def echo(self, connection, claims) -> None:
        self.sessions.append((endpoint_path(connection.request.path), claims.subject if claims else None))
        async for message in connection:
            await connection.send(message)


@pytest.fixture
async def echo():
    server = Echo()
    server.port = await server.shell.start("127.0.0.1", 0)
    yield server
    await server.shell.close()


async def test_routes_roles_and_the_404(echo):
    url = f"ws://127.0.0.1:{echo.port}"
    viewer, _ = echo.token("viewer")
    node, _ = echo.token("node")
    assert await raw_get(echo.port, "/health") == (200, '{\n "ok": true\n}\n')
    status, body = await raw_get(echo.port, "/nope")
    assert status == 404 and body == "no endpoint '/nope'; try /health, /echo, /upload or /live/{camera}\n"
    assert await handshake(url + "/echo") == 401
    assert await handshake(url + "/echo", node) == 403
    assert await handshake(url + "/upload", viewer) == 403
    assert await handshake(url + "/echo", viewer) == 101
    assert await handshake(url + "/echo?token=" + viewer) == 101
    assert await handshake(url + "/live/c1", viewer) == 404  # the check runs after authentication
    assert await handshake(url + "/live/c1") == 401
    assert await handshake(url + "/live/c0?x=1", viewer) == 101
    assert echo.sessions == [("/echo", "viewer-1"), ("/echo", "viewer-1"), ("/live/c0", "viewer-1")]


async def test_each_route_has_its_own_message_limit(echo):
    url = f"ws://127.0.0.1:{echo.port}"
    async with connect(url + "/upload", additional_headers=bearer(echo.token("node")[0]), max_size=None) as ws:
        await ws.send(b"x" * 50_000)
        assert len(await ws.recv()) == 50_000
    async with connect(url + "/echo", additional_headers=bearer(echo.token("viewer")[0])) as ws:
        await ws.send(b"x" * 1025)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1009


async def test_revocation_closes_only_the_revoked_tokens_sessions(echo):
    url = f"ws://127.0.0.1:{echo.port}"
    victim, victim_id = echo.token("viewer")
    async with connect(url + "/echo", additional_headers=bearer(victim)) as doomed, \
            connect(url + "/echo", additional_headers=bearer(echo.token("viewer")[0])) as bystander:
        await doomed.send("hi")
        await doomed.recv()
        echo.revoked.add(victim_id)
        assert echo.shell.close_revoked(frozenset({victim_id})) == 1
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(doomed.recv(), 5)
        assert closed.value.rcvd.code == 1008
        await bystander.send("still here")
        assert await bystander.recv() == "still here"
    assert await handshake(url + "/echo", victim) == 401


async def test_503_while_tokens_cannot_be_checked(echo):
    echo.uncheckable = "no key yet"
    assert await raw_get(echo.port, "/echo") == (503, "no key yet\n")
    assert (await raw_get(echo.port, "/health"))[0] == 200  # a route that needs no token still answers
    assert (await raw_get(echo.port, "/nope"))[0] == 404


async def test_a_route_with_a_frame_limit_refuses_to_start_on_a_websockets_that_cannot_enforce_it(monkeypatch):
    import shared.server.shell as shell

    routes = RouteTable([websocket_route("/ingest", NODES, Echo().echo, 100_000, max_fragment_bytes=1024)])
    monkeypatch.setattr(shell, "FRAME_LIMITS", False)  # websockets before 16.0: no Protocol.max_fragment_size
    with pytest.raises(RuntimeError, match="/ingest"):
        await ServerShell(routes, AccessControl(None)).start("127.0.0.1", 0)
