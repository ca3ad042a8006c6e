"""The store page's /api connection in headless Chromium, against a real ``sht store`` (issue 18's review).

A call in flight when the connection closes, or made while it closes or while the store is down, settles with
the page's readable error line within seconds (it used to wait for ever); the next call goes over the new
connection once the store is back.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.system.conftest import Processes, free_port, tokens, wait_for_health
from tests.system.test_web import CHROMIUM, CHROMIUM_ARGS, sync_playwright

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"),
]

LOST = "the connection to the store was lost"


def lost(replies: list[dict[str, Any]]) -> bool:
    return all(LOST in r.get("error", {}).get("message", "") for r in replies)
# `call` and `api` are the page's own (store/web/index.html); a call still pending after 5 s says so.
SETTLED = """(calls) => Promise.all(calls.map((p) => Promise.race([p,
    new Promise((r) => setTimeout(() => r({pending: "no answer in 5 s"}), 5000))])))"""
FLEET_AFTER_CLOSE = """() => { const inFlight = call("fleet", {});
    api.close();  // the page drops it (replies that still come are not read), as a store restart would
    const whileClosing = call("fleet", {});
    return (""" + SETTLED + """)([inFlight, whileClosing]); }"""
FLEET = "() => (" + SETTLED + ')([call("fleet", {})])'
STATUS = "document.querySelector('#status').textContent"


def start_store(processes: Processes, root: Path, port: int) -> Any:
    proc = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port))
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    return proc


def test_api_calls_settle_when_the_connection_closes_and_the_next_goes_over_the_new_one(
        processes: Processes, tmp_path: Path) -> None:
    root, port = tmp_path / "store", free_port()
    store = start_store(processes, root, port)
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{port}/?token={quote(tokens(root)['viewer'])}")
            page.wait_for_function(f"{STATUS}.includes('0 cameras')", timeout=10_000)

            # The page's connection closes under a call, and another is made while it closes.
            replies = page.evaluate(FLEET_AFTER_CLOSE)
            assert len(replies) == 2 and lost(replies), replies
            page.wait_for_function(f"{STATUS}.includes('retrying')", timeout=2_000)  # the page's error line
            (later,) = page.evaluate(FLEET)  # made while it is down: goes over the next connection
            assert later.get("result", {}).get("cameras") == {}, later
            page.wait_for_function(f"{STATUS}.includes('0 cameras')", timeout=5_000)

            # The store stops: a call made while it is down fails when the next connection cannot be made.
            store.send_signal(signal.SIGTERM)
            store.wait(10)
            page.wait_for_function(f"{STATUS}.includes('retrying')", timeout=5_000)
            replies = page.evaluate(FLEET)
            assert lost(replies), replies
            start_store(processes, root, port)  # back on the same port: the page's next call works
            page.wait_for_function(f"{STATUS}.includes('0 cameras')", timeout=10_000)
            (back,) = page.evaluate(FLEET)
            assert back.get("result", {}).get("cameras") == {}, back
            assert not errors, errors
        finally:
            browser.close()
