"""``/recordings`` through a real ``sht store`` process: ``urllib`` reads the sidecar and the MP4 with a viewer
token, and Debian's Chromium plays the MP4 straight from the store (``?token=``), seeking by Range requests to a
capture time the sidecar maps to media time."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import av
import pytest

from shared.clock import now_us
from tests.store.footage import CAMERA, SEGMENT_US, make_footage
from tests.system.conftest import free_port, tokens, wait_for_health

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - dev dependency
    sync_playwright = None  # type: ignore[assignment]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]

T0 = (now_us() - 2 * 3600 * 1_000_000) // 1_000_000 * 1_000_000  # recent: retention (30 days) keeps it
SEGMENTS = 30  # 60 s of 2 s segments, 1 s GOP, 10 fps


def iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def store(processes, tmp_path):
    root = tmp_path / "store"
    make_footage(root, SEGMENTS, start_us=T0)
    port = free_port()
    proc = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc)
    return url, tokens(root)["viewer"], proc


def fetch(url: str, token: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = Request(url, headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
    try:
        with urlopen(request, timeout=30) as reply:  # noqa: S310 - our own loopback store
            return reply.status, dict(reply.headers), reply.read()
    except HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_store_serves_a_range_as_one_mp4(store) -> None:
    url, viewer, proc = store
    query = f"from={iso(T0 + 10_000_000)}&to={iso(T0 + 40_000_000)}"
    status, _, body = fetch(f"{url}/recordings/{CAMERA}.json?{query}", viewer)
    assert status == 200, body
    doc = json.loads(body)
    assert doc["start"] == iso(T0 + 10_000_000) and doc["frames"] == 300 and doc["gaps"] == []
    status, headers, mp4 = fetch(f"{url}/recordings/{CAMERA}.mp4?{query}", viewer)
    assert status == 200 and int(headers["Content-Length"]) == len(mp4) == doc["bytes"]
    with av.open(io.BytesIO(mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 300
    status, headers, part = fetch(f"{url}/recordings/{CAMERA}.mp4?{query}&token={viewer}", None,
                                  {"Range": "bytes=-1000"})
    assert status == 206 and part == mp4[-1000:] and headers["Content-Range"] == f"bytes {len(mp4) - 1000}-" \
        f"{len(mp4) - 1}/{len(mp4)}"
    assert fetch(f"{url}/recordings/{CAMERA}.mp4?{query}")[0] == 401
    assert fetch(f"{url}/recordings/{CAMERA}.mp4?from=soon&to=now", viewer)[0] == 400
    assert proc.poll() is None


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                    ".ci/run installs it)")
@pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')")
def test_chromium_plays_and_seeks_the_mp4(store) -> None:
    url, viewer, _ = store
    src = f"{url}/recordings/{CAMERA}.mp4?from={iso(T0)}&to={iso(T0 + SEGMENTS * SEGMENT_US)}&token={viewer}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/health")  # an origin of the store's, so the video is same-origin
            page.evaluate("""src => { const v = document.createElement('video'); v.id = 'v'; v.muted = true;
                                      v.src = src; document.body.appendChild(v); v.play(); }""", src)
            page.wait_for_function("() => document.getElementById('v').currentTime > 0.5", timeout=20_000)
            assert page.evaluate("() => document.getElementById('v').duration") == pytest.approx(60, abs=0.2)
            # Seek near the end (the player fetches that part by Range), and it plays on from there.
            page.evaluate("() => { const v = document.getElementById('v'); v.currentTime = 45.3; }")
            page.wait_for_function("() => { const v = document.getElementById('v'); "
                                   "return !v.seeking && v.currentTime > 45.4; }", timeout=20_000)
            state = page.evaluate("() => { const v = document.getElementById('v'); return "
                                  "{t: v.currentTime, error: v.error && v.error.message, ready: v.readyState}; }")
            assert state["error"] is None and state["ready"] >= 2 and 45.3 < state["t"] < 55
        finally:
            browser.close()
