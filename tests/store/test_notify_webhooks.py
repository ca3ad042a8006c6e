"""Webhooks (store/notify/webhooks.py) in one process: what a status means, the signature, flags and settings
merged, and a settings webhook whose setting cannot be read keeping its queue while the flags' ones still send.
A real HTTP receiver (aiohttp) on loopback; the store-level paths are in tests/system/test_webhooks.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shared.webhooks import read_webhooks
from store.notify.changes import Batch, ChangeFeed, EventChange, EventObject
from store.notify.outbox import Outbox
from store.notify.webhooks import (
    RETRY_MAX_S,
    Webhooks,
    judge,
    load_or_create_secret,
    retry_delay,
    signature,
    target_of,
    webhooks_from,
)

SECRET = "store-secret-0123456789"


def test_what_each_status_means() -> None:
    assert judge(204, None, 0).delivered
    for status in (500, 503, 408, 429):
        outcome = judge(status, None, 0)
        assert not outcome.delivered and outcome.retry_s is not None and 0.5 <= outcome.retry_s <= 1.0
    assert judge(503, "120", 3).retry_s == 120.0, "Retry-After is honoured"
    for status in (400, 401, 404, 410):
        assert judge(status, None, 0).retry_s is None, "a 4xx is given up"
    assert "redirect" in judge(302, None, 0).detail and judge(302, None, 0).retry_s is None
    assert all(retry_delay(n) <= RETRY_MAX_S for n in range(100))


def test_the_signature_and_the_secret_file(tmp_path: Path) -> None:
    body = b'{"type":"new"}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    first = load_or_create_secret(tmp_path)
    assert len(first) == 64 and load_or_create_secret(tmp_path) == first
    assert (tmp_path / "webhook-secret").stat().st_mode & 0o777 == 0o600


def test_a_url_in_the_flags_and_the_settings_is_one_webhook_the_settings_one() -> None:
    setting = read_webhooks([{"url": "http://a/1", "secret": "x" * 16, "labels": ["person"]}, "http://b/2"])
    hooks = webhooks_from(["http://a/1", "http://c/3"], setting)
    assert sorted(h.url for h in hooks.values()) == ["http://a/1", "http://b/2", "http://c/3"]
    merged = hooks[target_of("http://a/1")]
    assert (merged.source, merged.secret, merged.filter.labels) == ("settings", "x" * 16, ("person",))
    with pytest.raises(ValueError, match="more than once"):
        read_webhooks(["http://a/1", {"url": "http://a/1"}])


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[str, bytes, dict[str, str]]]]]:
    got: list[tuple[str, bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((request.path, await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{name}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", got
    await runner.cleanup()


def alert(event_id: int) -> EventChange:
    event = EventObject(event_id, "cam0", "node0", 1_764_165_166_000_000, None, "motion", None, 0.4, None, (), None,
                        alert=True)
    return EventChange("new", None, event)


async def test_an_unreadable_setting_keeps_its_webhooks_queue_and_the_flags_still_send(tmp_path: Path,
                                                                                    receiver: Any) -> None:
    base, got = receiver
    outbox = await Outbox.open(tmp_path / "notify.sqlite3")
    await outbox.put(target_of(f"{base}/settings"), b'{"queued":"before the restart"}', {"event_id": 1})
    readable = False

    async def setting() -> Any:
        if not readable:
            raise ConnectionError("the index is out of reach")
        return [{"url": f"{base}/settings"}]

    hooks = Webhooks(outbox, ChangeFeed(None), SECRET, [f"{base}/flag"], setting, poll_s=0.1)
    try:
        await hooks.start()
        assert hooks.last_config_error is not None and "out of reach" in hooks.last_config_error
        await hooks.route(alert(7))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert [(path, headers["X-SHT-Event-Id"]) for path, _, headers in got] == [("/flag", "7")]
        assert outbox.counts(target_of(f"{base}/settings")).queued == 1, "kept while the setting is unreadable"
        readable = True  # the index is back: the settings webhook is known again and gets what waited
        for _ in range(200):
            if len(got) == 2:
                break
            await asyncio.sleep(0.02)
        assert got[1][:2] == ("/settings", b'{"queued":"before the restart"}')
        assert got[1][2]["X-SHT-Signature"] == signature(SECRET, got[1][1])
    finally:
        await hooks.stop()
        await outbox.close()


async def test_a_change_the_outbox_could_not_take_costs_that_change_not_the_router(tmp_path: Path,
                                                                                  receiver: Any) -> None:
    """The outbox's disk failing once (full, an I/O error) loses that change; the ones after it are still sent."""
    base, got = receiver
    outbox = await Outbox.open(tmp_path / "notify.sqlite3")
    put_many = outbox.put_many
    failures = [OSError("disk I/O error")]

    async def flaky_put_many(*args: Any, **kwargs: Any) -> list[int]:
        if failures:
            raise failures.pop()
        return await put_many(*args, **kwargs)

    outbox.put_many = flaky_put_many  # type: ignore[method-assign]
    feed = ChangeFeed(None)
    hooks = Webhooks(outbox, feed, SECRET, [f"{base}/flag"])
    try:
        await hooks.start()
        for event_id in (1, 2):
            feed._deliver(Batch((await feed._emit("new", None, alert(event_id).after),)))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert [headers["X-SHT-Event-Id"] for _, _, headers in got] == ["2"], "event 2 still routed after 1 failed"
    finally:
        await hooks.stop()
        await outbox.close()


async def test_the_status_decides_and_a_receivers_endless_body_is_not_waited_for() -> None:
    """A receiver answering 200 and then streaming a body without end (a wrong URL: a stream, a big download) is
    delivered at once; the store neither holds the body in memory nor waits for it until the POST's timeout (which
    made a delivered change a retry, sent again and again)."""
    from store.notify.webhooks import new_session, post

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        while True:
            await response.write(b"x" * 65536)
            await asyncio.sleep(0.01)

    app = web.Application()
    app.router.add_post("/endless", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with new_session() as session:
            started = asyncio.get_running_loop().time()
            outcome = await post(session, f"http://127.0.0.1:{port}/endless", b"{}", {})
            took = asyncio.get_running_loop().time() - started
        assert outcome.delivered, outcome
        assert took < 3.0, f"{took:.1f} s"
    finally:
        await runner.cleanup()


def test_sht_webhook_test_never_makes_a_secret_nobody_knows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Without --secret, it signs with a store's existing secret: run where no store is (./sht-data missing), it
    says what to give instead of making ./sht-data/webhook-secret and signing with a secret no receiver has."""
    import argparse

    from sht.webhook_cli import cmd_test

    monkeypatch.chdir(tmp_path)
    assert cmd_test(argparse.Namespace(url="http://127.0.0.1:9/hook", secret=None, root=None)) == 1
    assert "--secret" in capsys.readouterr().err
    assert not (tmp_path / "sht-data").exists()
    (tmp_path / "store").mkdir()
    assert cmd_test(argparse.Namespace(url="http://127.0.0.1:9/hook", secret=None, root="store")) == 1
    assert not (tmp_path / "store" / "webhook-secret").exists()
