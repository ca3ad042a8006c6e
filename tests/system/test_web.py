"""The store's live page in headless Chromium: six cameras from three real nodes, every <video> playing."""

from __future__ import annotations

import shutil
import time
from urllib.parse import quote

import pytest

from tests.system.live_clients import start_fleet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - dev dependency
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"),
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]

VIDEO_STATE = """() => [...document.querySelectorAll('.tile')].map(t => {
    const v = t.querySelector('video');
    return {camera: t.dataset.camera, time: v.currentTime, paused: v.paused, ready: v.readyState,
            badges: [...t.querySelectorAll('.badge')].map(b => b.textContent), error: v.error && v.error.message};
})"""


def test_live_page_plays_every_camera(processes, tmp_path):
    store_port, _, toks = start_fleet(processes, tmp_path, nodes=3, cameras=2, fps=5)
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{store_port}/?token={quote(toks['viewer'])}")
            page.wait_for_function("document.querySelectorAll('video').length === 6", timeout=15_000)
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.currentTime > 0.5)",
                                   timeout=20_000)
            first = {s["camera"]: s for s in page.evaluate(VIDEO_STATE)}
            time.sleep(2.0)
            second = {s["camera"]: s for s in page.evaluate(VIDEO_STATE)}
            assert sorted(second) == [f"cam{i}" for i in range(6)]
            for camera, state in second.items():
                assert not state["paused"] and state["error"] is None, state
                assert state["time"] - first[camera]["time"] > 1.0, f"{camera} is not advancing: {first} {second}"
                assert "node up" in state["badges"] and "live" in state["badges"], state
            assert "6 cameras, 3/3 nodes up" in page.inner_text("#status")
            assert not errors, errors
            page.screenshot(path=str(tmp_path / "live.png"))  # for a person to look at when it fails
            # Without a token the page itself is refused.
            refused = page.goto(f"http://127.0.0.1:{store_port}/")
            assert refused is not None and refused.status == 401
        finally:
            browser.close()
