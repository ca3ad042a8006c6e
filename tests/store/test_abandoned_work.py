"""Issue 14 rows 2, 3 and 4 (disk): abandoned exports stop and leave nothing, a janitor sweeps leftovers, the
thumbnail cache is bounded, and each token's temporary disk is capped, on real segments through ``Api``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import store.media.thumbs
from shared.auth import Claims
from shared.protocol.query import QueryServer, Request
from shared.timespec import TimeSpecError
from store.admin.commands import add_media_flags, media_limits_from_args
from store.index import index_path
from store.index.db import Index
from store.maintenance.janitor import CacheJanitor, sweep_exports, sweep_temporaries
from store.media.budget import MIB, BudgetRefused, MediaLimits, TempBudget, default_thumb_cache_bytes
from store.media.export import ExportCancelled, export_clip
from store.media.thumbs import SNAP_WIDTHS, ThumbnailCache, snap_width
from store.nodes.fleet import Fleet
from store.serve.api import Api
from tests.store.footage import CAMERA, SEGMENT_US, T0, make_footage, one_segment

LONG = 900  # segments: 30 minutes, an export that takes long enough to be abandoned half-way


def claims(token_id: str) -> Claims:
    return Claims("viewer", "viewer", 2**40, token_id)


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("footage")
    make_footage(root, LONG)
    return root


class ApiHarness:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.server = QueryServer()
        self.replies: list[dict] = []
        self.chunks = 0

    async def flush(self) -> None:
        for out in self.server.data_to_send():
            if isinstance(out, bytes):
                self.chunks += 1
            else:
                self.replies.append(json.loads(out))

    def request(self, rid: int, method: str, token: str = "t1", **params: object) -> asyncio.Task:
        request = self.server.receive(json.dumps({"id": rid, "method": method, "params": params}))
        assert isinstance(request, Request), self.server.data_to_send()
        return asyncio.create_task(self.api.handle(request, self.server, self.flush, claims(token)))

    def final(self, rid: int) -> dict:
        (reply,) = [r for r in self.replies if r.get("id") == rid and ("result" in r or "error" in r)]
        return reply


@pytest.fixture
async def harness(footage: Path):
    index = await Index.open(index_path(footage))
    api = Api(footage, index, Fleet(index.conn, lambda: T0))
    yield ApiHarness(api)
    await index.close()


def leftovers(root: Path) -> list[Path]:
    exports = root / "cache" / "exports"
    return sorted(exports.iterdir()) if exports.exists() else []


# --- row 2: an export whose client goes stops, and its files go at once ----------------------------------

def test_export_clip_stops_between_packets_and_removes_its_temporary(footage: Path, tmp_path: Path) -> None:
    pairs: list[tuple[Path, int]] = []
    _, data = one_segment()
    for k in range(20):
        path = tmp_path / "segs" / f"{k}.mp4"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        pairs.append((path, T0 + k * SEGMENT_US))
    cancel = threading.Event()
    out = tmp_path / "out" / "clip.mp4"

    def progress(done: int, total: int) -> None:
        if done == 3:
            cancel.set()

    with pytest.raises(ExportCancelled):
        export_clip(pairs, T0, T0 + 20 * SEGMENT_US, out, progress, cancel)
    assert not list(out.parent.iterdir()), "neither the clip nor its temporary may stay"
    finished = export_clip(pairs, T0, T0 + 20 * SEGMENT_US, out, None, threading.Event())
    assert finished.frames == 20 * 20 and out.stat().st_size == finished.bytes


async def test_an_abandoned_export_stops_and_leaves_nothing(harness: ApiHarness, footage: Path) -> None:
    rng = random.Random(14)
    for attempt in range(6):
        task = harness.request(attempt, "export", camera=CAMERA, from_us=T0, to_us=T0 + LONG * SEGMENT_US)
        await asyncio.sleep(rng.uniform(0.0, 0.4))  # the client vanishes at a random moment
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert leftovers(footage) == [], f"attempt {attempt}: files left the moment the request ended"
        assert harness.api.media.active == set() and harness.api.media.budget.held == {}
    await asyncio.sleep(1.0)  # a worker that kept going would rename its finished clip into place by now
    assert leftovers(footage) == []


# --- row 4 (disk): a token's exports in progress hold at most --temp-per-token -----------------------------

def segment_bytes() -> int:
    return len(one_segment()[1])


async def test_a_second_export_over_the_token_budget_is_refused_busy_naming_the_cap(harness: ApiHarness,
                                                                                      footage: Path) -> None:
    harness.api.media.budget.per_token = LONG * segment_bytes() * 3 // 2  # fits one whole export, not two
    whole = {"camera": CAMERA, "from_us": T0, "to_us": T0 + LONG * SEGMENT_US}
    first = harness.request(1, "export", **whole)
    for _ in range(1000):  # until the first holds its share of the budget
        if harness.api.media.budget.held:
            break
        await asyncio.sleep(0.005)
    await harness.request(2, "export", **whole)
    error = harness.final(2)["error"]
    assert error["code"] == "busy" and "--temp-per-token" in error["message"] and "MiB" in error["message"]
    await harness.request(3, "export", token="another", **whole)  # another token has its own budget
    assert "result" in harness.final(3)
    await first
    assert harness.final(1)["result"]["frames"] == LONG * 20
    assert harness.api.media.budget.held == {} and leftovers(footage) == []


async def test_an_export_larger_than_the_budget_is_too_large_before_any_work(harness: ApiHarness,
                                                                              footage: Path) -> None:
    harness.api.media.budget.per_token = 4 * MIB
    assert LONG * segment_bytes() > 4 * MIB > 20 * segment_bytes()
    started = time.monotonic()
    await harness.request(1, "export", camera=CAMERA, from_us=T0, to_us=T0 + LONG * SEGMENT_US)
    error = harness.final(1)["error"]
    assert error["code"] == "too-large" and error["field"] == "to_us"
    assert "4.0 MiB" in error["message"] and "shorter range" in error["message"]
    assert time.monotonic() - started < 1.0 and leftovers(footage) == []
    await harness.request(2, "export", camera=CAMERA, from_us=T0, to_us=T0 + 10 * SEGMENT_US)
    assert "result" in harness.final(2), "a short one still fits"


def test_budget_counts_per_token_and_in_all() -> None:
    budget = TempBudget(per_token=100, total=150)
    with budget.hold("a", 60, "x"), budget.hold("b", 60, "y"):
        with pytest.raises(BudgetRefused, match="--temp-per-token") as mine:
            budget.hold("a", 50, "an export").__enter__()
        assert mine.value.code == "busy"
        with pytest.raises(BudgetRefused, match="--temp-total") as everyone:
            budget.hold("c", 40, "an export").__enter__()
        assert everyone.value.code == "busy"
    assert budget.held == {} and budget.held_total == 0
    with pytest.raises(BudgetRefused) as never:
        budget.hold("a", 101, "an export").__enter__()
    assert never.value.code == "too-large"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 120), st.booleans()), max_size=40))
def test_budget_never_holds_more_than_its_caps(steps: list[tuple[str, int, bool]]) -> None:
    budget = TempBudget(per_token=100, total=180)
    open_holds: list = []
    for token, nbytes, release in steps:
        if release and open_holds:
            open_holds.pop(random.Random(nbytes).randrange(len(open_holds))).__exit__(None, None, None)
            continue
        hold = budget.hold(token, nbytes, "x")
        try:
            hold.__enter__()
            open_holds.append(hold)
        except BudgetRefused:
            pass
        assert all(v <= 100 for v in budget.held.values()) and budget.held_total <= 180
        assert budget.held_total == sum(budget.held.values())
    for hold in open_holds:
        hold.__exit__(None, None, None)
    assert budget.held == {} and budget.held_total == 0


# --- row 3: the thumbnail cache is bounded, widths snapped, hits fast -----------------------------------

def test_huge_widths_at_random_moments_stay_within_the_cache_bound(footage: Path, tmp_path: Path) -> None:
    bound = 60_000
    cache = ThumbnailCache(tmp_path / "thumbs", max_bytes=bound)
    rng = random.Random(3)
    for _ in range(60):
        k = rng.randrange(20)
        path = footage / next((footage / "segments" / CAMERA).rglob(f"{T0 + k * SEGMENT_US}.mp4")).relative_to(
            footage)
        thumb = cache.get_or_make(path, T0 + k * SEGMENT_US, T0 + k * SEGMENT_US + rng.randrange(SEGMENT_US),
                                  rng.randint(3000, 3840))
        assert (thumb.width, thumb.height) == (320, 240), "never wider than the source"
    on_disk = [p for p in (tmp_path / "thumbs").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in on_disk) <= bound
    assert len(on_disk) == len(cache) and cache.bytes == sum(p.stat().st_size for p in on_disk)
    assert all(p.name.endswith("-w320.jpg") for p in on_disk)


def test_lru_keeps_what_was_used_last_and_a_restart_reads_the_index_once(footage: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = next((footage / "segments" / CAMERA).rglob(f"{T0}.mp4"))
    probe = ThumbnailCache(tmp_path / "probe").get_or_make(path, T0, T0, 320)
    cache = ThumbnailCache(tmp_path / "thumbs", max_bytes=int(len(probe.jpeg) * 2.5))
    first = cache.get_or_make(path, T0, T0, 320)
    cache.get_or_make(path, T0, T0 + 500_000, 320)
    assert cache.get_or_make(path, T0, T0, 320) == first  # a hit: now the most recently used
    cache.get_or_make(path, T0, T0 + 1_000_000, 320)  # evicts the 500 ms frame, not the first
    names = sorted(p.name for p in (tmp_path / "thumbs").rglob("*.jpg"))
    assert names == ["0-w320.jpg", "1000000-w320.jpg"]

    def no_decoding(*args: object) -> None:
        raise AssertionError("a hit must not decode")

    monkeypatch.setattr(store.media.thumbs, "make_thumbnail", no_decoding)
    restarted = ThumbnailCache(tmp_path / "thumbs", max_bytes=10**6)
    assert restarted.get_or_make(path, T0, T0 + 20_000, 300) == first  # same frame, width snapped to 320
    walks = []
    monkeypatch.setattr(store.media.thumbs.os, "walk", lambda *a: walks.append(a) or iter(()))
    monkeypatch.setattr(store.media.thumbs, "_frame_index", no_decoding)
    for _ in range(5):
        assert restarted.get_or_make(path, T0, T0 + 30_000, 320) == first
    assert walks == [], "hits use the in-memory index, never a directory walk, and open no MP4"
    monkeypatch.undo()
    smaller = ThumbnailCache(tmp_path / "thumbs", max_bytes=len(first.jpeg))
    assert smaller.trim() == 1 and len(smaller) == 1


@given(st.integers(16, 3840), st.integers(16, 7680))
def test_snapped_width_is_one_of_a_few_and_never_above_the_source(requested: int, source: int) -> None:
    width = snap_width(requested, source)
    assert width <= source or width == 16
    assert width in SNAP_WIDTHS or width == max(16, source)
    if requested <= source and requested <= SNAP_WIDTHS[-1]:
        assert width >= requested, "at least as wide as asked, when the source allows"


def test_default_cache_size_is_the_smaller_of_256_mib_and_1_percent() -> None:
    assert default_thumb_cache_bytes(10 * 1024**4) == 256 * MIB
    assert default_thumb_cache_bytes(10 * 1024**3) == 10 * 1024**3 // 100
    assert default_thumb_cache_bytes(10 * 1024**3, percent=5) == 10 * 1024**3 // 20


# --- the janitor ------------------------------------------------------------------------------------------

def aged(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


async def test_janitor_removes_old_leftovers_only(tmp_path: Path) -> None:
    exports, thumbs = tmp_path / "cache" / "exports", tmp_path / "cache" / "thumbs"
    old_clip = aged(exports / "cam0-aa.mp4", 600)
    old_temp = aged(exports / "cam0-bb.mp4.tmp-1234", 600)
    busy = aged(exports / "cam0-cc.mp4.tmp-9999", 600)  # a clip a request still works on
    fresh = aged(exports / "cam0-dd.mp4", 10)
    thumb_temp = aged(thumbs / "cam0" / "1" / "0-w320.jpg.tmp-abcd", 600)
    thumb = aged(thumbs / "cam0" / "1" / "0-w320.jpg", 600)
    janitor = CacheJanitor(exports, thumbs, lambda: {"cam0-cc.mp4"}, max_age_s=300)
    removed = await janitor.sweep()
    assert sorted(removed) == sorted([old_clip, old_temp, thumb_temp])
    assert busy.exists() and fresh.exists() and thumb.exists() and janitor.removed == 3
    assert sweep_exports(tmp_path / "nowhere", (), 1, time.time()) == []
    assert sweep_temporaries(tmp_path / "nowhere", 1, time.time()) == []


async def test_janitor_runs_by_itself(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    old = aged(exports / "cam0-aa.mp4", 600)
    janitor = CacheJanitor(exports, tmp_path / "thumbs", max_age_s=300, every_s=0.05)
    janitor.start()
    try:
        for _ in range(100):
            if not old.exists():
                break
            await asyncio.sleep(0.02)
    finally:
        await janitor.stop()
    assert not old.exists()


# --- flags --------------------------------------------------------------------------------------------

def parse(*argv: str) -> MediaLimits:
    parser = argparse.ArgumentParser()
    add_media_flags(parser)
    return media_limits_from_args(parser.parse_args(list(argv)))


def test_media_flags() -> None:
    assert parse() == MediaLimits(768 * MIB, 2048 * MIB, None, None)
    assert parse("--thumb-cache", "512M", "--temp-per-token", "1G", "--temp-total", "3G") == MediaLimits(
        1024 * MIB, 3072 * MIB, 512 * MIB, None)
    assert parse("--thumb-cache", "2%").thumb_cache_percent == 2.0
    for argv, flag in ((("--thumb-cache", "90%"), "--thumb-cache"), (("--temp-per-token", "0"), "--temp-per-token"),
                       (("--temp-total", "lots"), "--temp-total")):
        with pytest.raises(TimeSpecError, match=flag):
            parse(*argv)
