"""The store page's Review view in headless Chromium, against a real ``sht store`` holding real recorded segments.

One store and one browser serve the whole module: /review?camera&at opens playing, seeks (a click on the
timeline, ←, frame steps) land on the capture time asked for, the page fits a phone and a desktop, the events
list plays an event from its pre-roll, and errors are a readable line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image

from node.capture.encode import H264Encoder
from node.recording.segmenter import Segmenter, build_segment
from node.sources.synthetic import SyntheticSource
from shared.fanout import AccessUnit
from shared.protocol.ingest import EventRecord, SegmentHeader
from store.index import index_path
from store.index.db import Index
from store.index.event_labels import EventLabelling, set_event_labelling, set_event_snapshot
from store.ingest.events import ingest_event
from store.ingest.writer import segment_relpath
from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health
from tests.system.test_web import CHROMIUM, CHROMIUM_ARGS, sync_playwright

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"),
]

S = 1_000_000
SEGMENT_S, FPS = 10, 10
KEYFRAME_S = 1.0


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * S


DAY = "2026-11-20"
# cam0 recorded 09:00-11:00 and 11:30-12:00 (a gap between), cam1 09:00-10:00.
RECORDED = {"cam0": [(us(f"{DAY}T09:00"), us(f"{DAY}T11:00")), (us(f"{DAY}T11:30"), us(f"{DAY}T12:00"))],
            "cam1": [(us(f"{DAY}T09:00"), us(f"{DAY}T10:00"))]}
PERSON = (us(f"{DAY}T10:20"), us(f"{DAY}T10:20:30"))  # a cam0 event the detector labelled, with a snapshot
MOTION = (us(f"{DAY}T09:30"), us(f"{DAY}T09:30:10"))  # a cam1 motion event, never analysed
PREROLL_S = 5


def one_segment() -> tuple[SegmentHeader, bytes]:
    """A real 10 s segment (320x240, 10 fps, 1 s GOP) made by the node's code."""
    src, enc = SyntheticSource(320, 240, FPS), H264Encoder(320, 240, FPS, keyframe_interval_s=KEYFRAME_S)
    seg = Segmenter("cam0", segment_seconds=SEGMENT_S, fps=FPS)
    encoded = [u for i in range(SEGMENT_S * FPS + 1) for u in enc.encode(src.read(i), i * S // FPS)] + enc.flush()
    finished = [s for u in encoded if (s := seg.push(AccessUnit.build(u.capture_us, u.keyframe, u.data)))]
    return build_segment("node0", finished[0], 320, 240, FPS)


def seed(root: Path) -> None:
    """Segment files in the store layout (hard links to one real segment) and the rows ingest writes for them."""
    header, data = one_segment()
    source = root / "source.mp4"
    root.mkdir(parents=True)
    source.write_bytes(data)
    rows = []
    for camera, spans in RECORDED.items():
        for start, end in spans:
            for at in range(start, end, SEGMENT_S * S):
                rel = segment_relpath(camera, at)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(source, root / rel)
                rows.append((dataclasses.replace(header, camera=camera, start_us=at, end_us=at + SEGMENT_S * S),
                             rel.as_posix()))
    jpeg = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 120, 40)).save(jpeg, "JPEG")

    async def index() -> None:
        db = await Index.open(index_path(root))
        try:
            await db.conn.execute("PRAGMA synchronous = OFF")  # a fixture's bulk load, not the store's durability
            for h, rel in rows:
                await db.insert_segment(h, rel, h.end_us)
            person = await ingest_event(db.conn, EventRecord("node0", "cam0", *PERSON, "motion", 0.6,
                                                             (0.2, 0.2, 0.3, 0.5), PERSON[0] + 5 * S))
            await set_event_labelling(db.conn, person.event_id, EventLabelling("person", 0.87, (0.2, 0.2, 0.3, 0.5),
                                                                               {"person": 1}))
            await set_event_snapshot(db.conn, person.event_id, PERSON[0] + 5 * S, 320, 240, jpeg.getvalue())
            await ingest_event(db.conn, EventRecord("node0", "cam1", *MOTION, "motion", 0.4))
        finally:
            await db.close()

    asyncio.run(index())


@pytest.fixture(scope="module")
def review_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("review")
    root = tmp / "store"
    seed(root)
    (tmp / "logs").mkdir()
    procs = Processes(tmp / "logs")
    port = free_port()
    proc = procs.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
                       "--max-age", "off", "--min-free", "off")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc)
        yield {"url": url, "token": tokens(root)["viewer"], "root": root, "procs": procs}
    finally:
        procs.stop_all()
    assert "Traceback" not in procs.log("store")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(timezone_id="UTC", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()


def review_url(store: dict[str, Any], camera: str, at: str) -> str:
    return f"{store['url']}/review?camera={camera}&at={quote(at)}&token={quote(store['token'])}"


def iso_us(text: str) -> int:
    """Microseconds of a browser's ISO time (``2026-11-20T10:00:00.000Z``)."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * S)


def shown_us(page: Any) -> int:
    return iso_us(page.get_attribute("#rv-clock", "data-capture"))


def wait_shown_near(page: Any, at_us: int, tolerance_s: float, timeout_ms: int = 10_000) -> int:
    """Wait until the frame on screen is within ``tolerance_s`` of ``at_us``; its capture time."""
    page.wait_for_function(
        """([at, tol]) => { const c = document.querySelector('#rv-clock').dataset.capture;
                            return c && Math.abs(Date.parse(c) - at) <= tol; }""",
        arg=[at_us / 1000, tolerance_s * 1000], timeout=timeout_ms)
    return shown_us(page)


# The window's JSON is in, no seek is pending and the readout shows the frame at the video's time.
SETTLED = """() => { const v = document.querySelector('#rv-video'), w = window.review.state.win;
    const shown = Date.parse(document.querySelector('#rv-clock').dataset.capture);
    return w && w.ready && !v.seeking && v.readyState >= 2
        && Math.abs(window.review.mediaToCapture(v.currentTime) - shown) < 1000 / w.fps; }"""

DEBUG_STATE = """JSON.stringify({w: window.review.state.win, cap: document.querySelector('#rv-clock').dataset.capture,
  t: document.querySelector('#rv-video').currentTime, p: document.querySelector('#rv-video').paused,
  rs: document.querySelector('#rv-video').readyState, s: document.querySelector('#rv-video').seeking})"""


def recorded_at(root: Path, camera: str, at_us: int) -> bool:
    """The index has a segment of ``camera`` holding ``at_us``."""
    with sqlite3.connect(index_path(root)) as db:
        return db.execute("SELECT 1 FROM segments WHERE camera = ? AND start_us <= ? AND end_us > ?",
                          (camera, at_us, at_us)).fetchone() is not None


def capture_from_pieces(sidecar: dict[str, Any], media_s: float) -> int:
    """Capture time (µs) of media time ``media_s`` through the /recordings JSON's pieces, as the contract says."""
    piece = [p for p in sidecar["pieces"] if p["media_s"] <= media_s + 1e-6][-1]
    return iso_us(piece["start"]) + round((media_s - piece["media_s"]) * S)


def test_review_link_plays_recorded_footage(review_store, page):
    response = page.goto(review_url(review_store, "cam0", f"{DAY}T10:00:00Z"))
    assert response is not None and response.status == 200
    page.wait_for_function("document.querySelector('#rv-video') && "
                           "document.querySelector('#rv-video').currentTime > 0.3", timeout=15_000)
    video = page.locator("#rv-video")
    assert video.get_attribute("data-camera") == "cam0"
    assert video.get_attribute("data-start") == f"{DAY}T10:00:00.000Z"
    first = wait_shown_near(page, us(f"{DAY}T10:00"), 3.0)
    t0 = page.evaluate("document.querySelector('#rv-video').currentTime")
    page.wait_for_timeout(1500)
    t1 = page.evaluate("document.querySelector('#rv-video').currentTime")
    assert t1 - t0 > 0.8, f"the video is not advancing: {t0} then {t1}"
    assert shown_us(page) - first > 0.8 * S
    assert page.locator("#rv-message").is_hidden()
    assert page.locator(".rv-lane").count() == 2  # a timeline per camera
    assert page.input_value("#rv-date") == DAY


def test_seek_by_timeline_click_and_keys(review_store, page):
    page.goto(review_url(review_store, "cam1", f"{DAY}T09:10:00Z"))
    page.wait_for_function("document.querySelector('#rv-clock').dataset.capture", timeout=15_000)
    # A click on cam0's timeline at 10:40: the page asks for the moment under the pointer.
    lane = page.locator(".rv-lane[data-camera=cam0] canvas")
    box = lane.bounding_box()
    assert box is not None
    target = us(f"{DAY}T10:40")
    x = (target - us(f"{DAY}T00:00")) / (86_400 * S) * box["width"]
    lane.click(position={"x": x, "y": box["height"] / 2})
    page.wait_for_function("document.querySelector('#rv-video').dataset.camera === 'cam0'")
    asked = iso_us(page.get_attribute("#rv-video", "data-start"))
    assert abs(asked - target) <= 86_400 * S / box["width"] * 1.5, "the click asked for another moment"
    wait_shown_near(page, asked, KEYFRAME_S + 1.0)
    page.keyboard.press(" ")
    page.wait_for_function("document.querySelector('#rv-video').paused")
    page.wait_for_function(SETTLED)
    page.wait_for_timeout(100)
    paused_at = shown_us(page)
    assert abs(paused_at - asked) <= (KEYFRAME_S + 2.0) * S
    # The readout is the JSON's mapping of the video's own time, and the index has footage there.
    sidecar = page.evaluate("""async () => { const v = document.querySelector('#rv-video');
        const r = await fetch(v.src.replace('.mp4?', '.json?')); return await r.json(); }""")
    media_s = page.evaluate("document.querySelector('#rv-video').currentTime")
    assert abs(capture_from_pieces(sidecar, media_s) - paused_at) <= S // FPS
    assert recorded_at(review_store["root"], "cam0", paused_at)
    # ← 10 s, then frame steps while paused.
    page.keyboard.press("ArrowLeft")
    back = wait_shown_near(page, paused_at - 10 * S, KEYFRAME_S)
    assert recorded_at(review_store["root"], "cam0", back)
    page.wait_for_function(SETTLED)
    back = shown_us(page)
    page.keyboard.press(".")
    try:
        page.wait_for_function("([was]) => Date.parse(document.querySelector('#rv-clock').dataset.capture) > was",
                               arg=[back / 1000], timeout=5000)
    except Exception:
        print("DEBUG", back, page.evaluate(DEBUG_STATE))
        raise
    assert abs(shown_us(page) - back - S // FPS) <= S // FPS // 2, "one frame forward"
    page.keyboard.press(",")
    page.wait_for_function("([was]) => Math.abs(Date.parse(document.querySelector('#rv-clock').dataset.capture) "
                           "- was) < 20", arg=[back / 1000])
    assert page.evaluate("document.querySelector('#rv-video').paused")
    # Export: a link to the MP4 of the span (from the moment clicked, a minute), served as such.
    link = page.locator("#rv-export")
    assert link.get_attribute("download", timeout=1000) is not None
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/recordings/cam0.mp4?from=")
    reply = page.request.get(review_store["url"] + href, headers={"Range": "bytes=0-1023"})
    assert reply.status in (200, 206) and reply.headers["content-type"].startswith("video/mp4")


def test_speed_keys_go_through_one_two_four_eight(review_store, page):
    page.goto(review_url(review_store, "cam0", f"{DAY}T10:00:00Z"))
    page.wait_for_function("document.querySelector('#rv-video').currentTime > 0.3", timeout=15_000)
    rates = []
    for key in "+++++--":  # two presses past 8x stay at 8x; then down
        page.keyboard.press(key)
        rates.append(page.evaluate("document.querySelector('#rv-video').playbackRate"))
    assert rates == [2, 4, 8, 8, 8, 4, 2]
    assert page.input_value("#rv-speed") == "2"
    page.keyboard.press("-")
    page.keyboard.press("-")
    assert page.evaluate("document.querySelector('#rv-video').playbackRate") == 1


@pytest.mark.parametrize("width,height", [(375, 740), (1280, 800)])
def test_review_fits_phone_and_desktop(review_store, browser, tmp_path, width, height):
    context = browser.new_context(timezone_id="UTC", viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.goto(review_url(review_store, "cam0", f"{DAY}T09:30:00Z"))
        page.wait_for_function("document.querySelector('#rv-video').currentTime > 0.3", timeout=15_000)
        page.wait_for_function("document.querySelectorAll('.rv-lane').length === 2")
        page.screenshot(path=str(tmp_path / f"review-{width}.png"))
        for selector in ("#rv-video", ".rv-lane[data-camera=cam0] canvas", ".rv-lane[data-camera=cam1] canvas",
                         "#rv-clock", "#rv-play"):
            element = page.locator(selector)
            assert element.is_visible(), selector
            box = element.bounding_box()
            assert box is not None and box["width"] > 20, (selector, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box, width)
            assert box["y"] >= 0 and box["y"] + box["height"] <= height + 0.5, (selector, box, height)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    finally:
        context.close()


def test_events_list_plays_from_preroll(review_store, page):
    page.goto(f"{review_store['url']}/?token={quote(review_store['token'])}")
    page.click("#tab-review")
    page.wait_for_function("document.querySelectorAll('.rv-lane').length === 2", timeout=15_000)
    page.fill("#rv-date", DAY)
    page.dispatch_event("#rv-date", "change")
    page.wait_for_function("document.querySelectorAll('#ev-list li').length === 2", timeout=10_000)
    page.select_option("#ev-label", "person")
    items = page.locator("#ev-list li")
    assert items.count() == 1
    assert "cam0" in items.first.inner_text() and "0.87" in items.first.inner_text()
    page.wait_for_function("document.querySelector('#ev-list li img').naturalWidth === 320", timeout=5000)
    items.first.click()
    start = PERSON[0] - PREROLL_S * S
    page.wait_for_function("document.querySelector('#rv-video').dataset.camera === 'cam0'")
    assert iso_us(page.get_attribute("#rv-video", "data-start")) == start
    wait_shown_near(page, start, KEYFRAME_S + 1.0)
    page.select_option("#ev-label", "")
    page.select_option("#ev-camera", "cam1")
    assert page.locator("#ev-list li").count() == 1 and "motion" in page.inner_text("#ev-list li")


@pytest.mark.parametrize("camera,at,status,words", [
    ("cam0", f"{DAY}T11:10:00Z", 200, "404"),  # in the gap: nothing recorded in the window asked for
    ("nocam", f"{DAY}T10:00:00Z", 200, "404"),
    ("cam0", "half past ten", 400, "is not a time"),
])
def test_errors_are_a_readable_line(review_store, page, camera, at, status, words):
    response = page.goto(review_url(review_store, camera, at))
    assert response is not None and response.status == status
    page.wait_for_function("!document.querySelector('#rv-message').hidden", timeout=10_000)
    text = page.inner_text("#rv-message")
    assert words in text, text
    assert page.locator("#rv-message").is_visible()



def test_review_follows_a_recording_node(processes, tmp_path, browser):
    """A real node recording 2 s segments: playback from its first segment carries on, window after window, as the
    node uploads more (each window's end reached, the next asked for from where it ended)."""
    store_port, toks = free_port(), tokens(tmp_path / "store")
    store = processes.start("store", "store", "--root", str(tmp_path / "store"), "--host", "127.0.0.1",
                            "--port", str(store_port))
    url = f"http://127.0.0.1:{store_port}"
    wait_for_health(url, store)
    node_port = free_port()
    node = processes.start("node0", "node", "--id", "node0", "--host", "127.0.0.1", "--port", str(node_port),
                           "--store", f"ws://127.0.0.1:{store_port}", "--spool", str(tmp_path / "spool"),
                           "--size", "320x240", "--fps", "10", "--segment-seconds", "2", "--camera",
                           "cam0=synthetic", token=toks["node"])
    wait_for_health(f"http://127.0.0.1:{node_port}", node)
    deadline = time.monotonic() + 20
    while not (cameras := get_json(url + "/health")["cameras"]).get("cam0"):
        assert time.monotonic() < deadline, "the node's first segment never reached the store"
        time.sleep(0.2)
    first_us = cameras["cam0"]["first_start_us"]
    context = browser.new_context(timezone_id="UTC")
    try:
        page = context.new_page()
        at = datetime.fromtimestamp(first_us / S, UTC).isoformat()
        page.goto(f"{url}/review?camera=cam0&at={quote(at)}&token={quote(toks['viewer'])}")
        page.wait_for_function("document.querySelector('#rv-clock').dataset.capture", timeout=15_000)
        starts = set()
        end = time.monotonic() + 9
        while time.monotonic() < end:
            starts.add(page.get_attribute("#rv-video", "data-start"))
            time.sleep(0.2)
        assert len(starts) >= 3, f"playback did not carry on into newer footage: {sorted(starts)}"
        assert shown_us(page) - first_us > 5 * S, "the readout did not follow the recording"
        assert page.locator("#rv-message").is_hidden(), page.inner_text("#rv-message")
    finally:
        context.close()
