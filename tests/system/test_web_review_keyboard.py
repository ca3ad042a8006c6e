"""The Review view's timeline bars from the keyboard and zoomed, in headless Chromium against a real store.

Reuses test_web_review's store (real segments: cam0 09:00-11:00 and 11:30-12:00, a person event at 10:20; cam1
09:00-10:00) and its browser: a bar focused with Tab is a slider whose cursor ←/→, Home/End and PageUp/PageDown
move (aria-valuetext says the capture time), Enter plays from it; +/- and the zoom buttons go 24 h → 6 h → 1 h →
10 min around the cursor, a click maps to the right moment in the zoomed window, a drag or the cursor pans it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.system import test_web_review as review
from tests.system.test_web_review import DAY, KEYFRAME_S, S, iso_us, review_url, us, wait_shown_near

# That module's fixtures, shared: its store (seeded once for this module too) and its browser.
review_store, browser, page = review.review_store, review.browser, review.page

pytestmark = pytest.mark.usefixtures("review_store")

LANE = ".rv-lane[data-camera=cam0] canvas"


def open_day(page: Any, store: dict[str, Any], camera: str, at: str) -> None:
    """The review link opened and the day's timelines and events drawn."""
    page.goto(review_url(store, camera, at))
    page.wait_for_function("([day]) => window.review.state.loadedDay === day",
                           arg=[us(f"{DAY}T00:00") / 1000], timeout=15_000)


def cursor_us(page: Any) -> int:
    return iso_us(page.get_attribute(LANE, "data-cursor"))


def value(page: Any) -> tuple[int, str]:
    """The focused bar's aria-valuenow (seconds into the day) and aria-valuetext."""
    now, text = page.evaluate("""() => { const c = document.activeElement;
        return [c.getAttribute('aria-valuenow'), c.getAttribute('aria-valuetext')]; }""")
    return int(now), text


def window_us(page: Any) -> tuple[int, int]:
    shown = page.locator("#rv-window")
    return iso_us(shown.get_attribute("data-from")), iso_us(shown.get_attribute("data-to"))


def test_timeline_bar_is_a_keyboard_slider(review_store, page):
    open_day(page, review_store, "cam1", f"{DAY}T09:10:00Z")
    page.wait_for_function("document.querySelector('#rv-clock').dataset.capture", timeout=15_000)
    # Tab from the zoom buttons reaches cam0's bar, the first; it is a slider starting on its first recording.
    page.focus("#rv-zoom-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('.rv-lane').dataset.camera") == "cam0"
    assert page.get_attribute(LANE, "role") == "slider" and page.get_attribute(LANE, "aria-valuemax") == "86400"
    assert value(page) == (9 * 3600, f"{DAY} 09:00:00, recorded")
    steps = [("ArrowRight", "09:01:00"), ("ArrowRight", "09:02:00"), ("Shift+ArrowRight", "09:12:00"),
             ("ArrowLeft", "09:11:00"), ("Shift+ArrowLeft", "09:01:00"),
             ("PageDown", "10:20:00"),  # the person event
             ("PageUp", "10:20:00"),    # none before it on cam0
             ("End", "11:59:59"),       # the last recorded second
             ("Shift+ArrowLeft", "11:49:59"), ("Home", "09:00:00")]
    for key, expected in steps:
        page.keyboard.press(key)
        assert cursor_us(page) == us(f"{DAY}T{expected}"), key
        _, text = value(page)
        assert text.startswith(f"{DAY} {expected}"), (key, text)
    page.keyboard.press("PageDown")
    assert value(page)[1] == f"{DAY} 10:20:00, recorded, event person"
    page.keyboard.press("Shift+ArrowRight")
    assert value(page)[1] == f"{DAY} 10:30:00, recorded"
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    assert value(page) == (11 * 3600 - 10 * 60, f"{DAY} 10:50:00, recorded")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    assert value(page)[1] == f"{DAY} 11:10:00, not recorded"  # the gap
    # Nothing the bar's keys did reached the player: cam1 still, at its own speed.
    assert page.get_attribute("#rv-video", "data-camera") == "cam1"
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Enter")  # plays cam0 from the cursor, as a click there does
    page.wait_for_function("document.querySelector('#rv-video').dataset.camera === 'cam0'")
    assert page.get_attribute("#rv-video", "data-start") == f"{DAY}T10:50:00.000Z"
    wait_shown_near(page, us(f"{DAY}T10:50"), KEYFRAME_S + 1.0)
    assert page.evaluate("document.activeElement.tagName") == "CANVAS"
    page.keyboard.press(" ")  # space still pauses with the bar focused
    page.wait_for_function("document.querySelector('#rv-video').paused")


def test_zoom_and_click_at_every_level(review_store, page):
    open_day(page, review_store, "cam0", f"{DAY}T10:00:00Z")
    assert page.inner_text("#rv-window") == "00:00–24:00 (24 h)"
    page.focus(LANE)
    page.keyboard.press("Home")
    for _ in range(3):
        page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("+")  # 6 h around the cursor (09:30)
    assert window_us(page) == (us(f"{DAY}T06:30"), us(f"{DAY}T12:30"))
    page.keyboard.press("+")  # 1 h
    assert window_us(page) == (us(f"{DAY}T09:00"), us(f"{DAY}T10:00"))
    assert page.inner_text("#rv-window") == "09:00–10:00 (1 h)"
    assert page.evaluate("document.querySelector('#rv-video').playbackRate") == 1, "+ zoomed, not the speed"
    # A click 40 min into the 1 h window asks for 09:40.
    lane = page.locator(LANE)
    box = lane.bounding_box()
    assert box is not None
    lane.click(position={"x": 40 / 60 * box["width"], "y": box["height"] / 2})
    page.wait_for_function("document.querySelector('#rv-video').dataset.start.startsWith('2026-11-20T09:')")
    asked = iso_us(page.get_attribute("#rv-video", "data-start"))
    assert abs(asked - us(f"{DAY}T09:40")) <= 3600 * S / box["width"] * 1.5, "the click asked for another moment"
    wait_shown_near(page, asked, KEYFRAME_S + 1.0)
    # The button zooms to 10 min around the cursor, which the click put at the moment clicked.
    page.click("#rv-zoom-in")
    start, end = window_us(page)
    assert end - start == 600 * S and abs(start + 300 * S - asked) <= 1000
    assert page.is_disabled("#rv-zoom-in")
    was = page.get_attribute("#rv-video", "data-start")
    lane.click(position={"x": 0.25 * box["width"], "y": box["height"] / 2})
    page.wait_for_function("([was]) => document.querySelector('#rv-video').dataset.start !== was", arg=[was])
    clicked = iso_us(page.get_attribute("#rv-video", "data-start"))
    assert abs(clicked - (start + 150 * S)) <= 600 * S / box["width"] * 1.5
    # A drag pans the window (and plays nothing); the cursor's keys pan it when it goes past an edge.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 4, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    dragged, _ = window_us(page)
    assert abs(dragged - (start + 150 * S)) <= 600 * S / box["width"] * 2, "a quarter of the bar: 2.5 min"
    assert iso_us(page.get_attribute("#rv-video", "data-start")) == clicked
    page.focus(LANE)
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    panned, end = window_us(page)
    assert panned > dragged and end > cursor_us(page), "the window follows the cursor"
    for _ in range(3):
        page.keyboard.press("-")
    assert page.inner_text("#rv-window") == "00:00–24:00 (24 h)" and page.is_disabled("#rv-zoom-out")
    # ctrl+wheel zooms around the pointer.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    start, end = window_us(page)
    assert end - start == 6 * 3600 * S and abs(start - us(f"{DAY}T09:00")) <= 86_400 * S / box["width"] * 1.5


def test_zoomed_review_fits_a_phone(review_store, browser):
    context = browser.new_context(timezone_id="UTC", viewport={"width": 375, "height": 740})
    try:
        page = context.new_page()
        open_day(page, review_store, "cam0", f"{DAY}T10:00:00Z")
        page.click("#rv-zoom-in")
        page.click("#rv-zoom-in")
        assert page.inner_text("#rv-window").endswith("(1 h)")
        for selector in ("#rv-zoom-in", "#rv-zoom-out", "#rv-window", LANE):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375.5, (selector, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways"
    finally:
        context.close()
