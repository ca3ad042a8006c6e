"""The store's recent notifications (store/notify/history.py) over a real outbox file: queued and retrying read from
the outbox (a reopened one too), sent/failed/dropped from what the outbox told, newest first, bounded, filtered by
target; MQTT's retained state listed only when it fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store.notify.history import NotifyHistory, UnknownTarget
from store.notify.outbox import Outbox

HOOK, MQTT = "webhook:00aa11bb22cc33dd", "mqtt"
NAMES = {HOOK: "http://hooks.local:8123/…", MQTT: "mqtt://broker:1883/sht"}


def change(event_id: int, kind: str = "new", camera: str = "cam0", label: str | None = "person") -> bytes:
    after = {"id": event_id, "camera": camera, "node": "node0", "label": label, "alert": True}
    return json.dumps({"type": kind, "before": None, "after": after}, separators=(",", ":")).encode()


async def opened(path: Path, history: NotifyHistory, bound: int = 10_000) -> Outbox:
    outbox = await Outbox.open(path, bound)
    outbox.on_finished = history.finished
    return outbox


async def test_each_state_newest_first_and_filtered_by_target(tmp_path: Path) -> None:
    history = NotifyHistory()
    outbox = await opened(tmp_path / "notify.sqlite3", history)
    try:
        for n in range(1, 4):
            await outbox.put(HOOK, change(n), {"event_id": n, "type": "new"})
        await outbox.put(MQTT, change(1), {"topic": "sht/events"})
        await outbox.put(MQTT, b"ON", {"topic": "sht/cam0/motion", "retain": True})  # retained state: counted only
        first = await outbox.next(HOOK, wait_s=0)
        assert first is not None
        await outbox.retry_later(first.id, 0, "HTTP 500")
        await outbox.done(first.id)  # sent at its second try
        second = await outbox.next(HOOK, wait_s=0)
        assert second is not None
        await outbox.drop(second.id, "HTTP 400")
        third = await outbox.next(HOOK, wait_s=0)
        assert third is not None
        await outbox.retry_later(third.id, 60, "no answer within 10 s")
        for _ in range(2):
            item = await outbox.next(MQTT, wait_s=0)
            assert item is not None
            await outbox.done(item.id)

        report = await history.report(outbox, NAMES)
        states = [(n["target"], n["event_id"], n["state"], n["attempts"], n["error"]) for n in report["items"]]
        assert sorted(states, key=str) == sorted([
            (HOOK, 1, "sent", 2, "HTTP 500"), (HOOK, 2, "failed", 1, "HTTP 400"),
            (HOOK, 3, "retrying", 1, "no answer within 10 s"), (MQTT, 1, "sent", 1, None)], key=str)
        assert [n["at_us"] for n in report["items"]] == sorted((n["at_us"] for n in report["items"]), reverse=True)
        retrying = next(n for n in report["items"] if n["state"] == "retrying")
        assert retrying["due_us"] > retrying["put_us"] and retrying["camera"] == "cam0"
        sent = next(n for n in report["items"] if n["target"] == HOOK and n["state"] == "sent")
        assert (sent["type"], sent["camera"], sent["label"], sent["alert"]) == ("new", "cam0", "person", True)
        by_target = {t["target"]: t for t in report["targets"]}
        assert by_target[HOOK]["name"] == NAMES[HOOK] and by_target[HOOK]["configured"] is True
        assert (by_target[HOOK]["delivered"], by_target[HOOK]["failed"], by_target[HOOK]["queued"]) == (1, 1, 1)
        assert by_target[MQTT]["delivered"] == 2, "the retained state counted, not listed"

        only = await history.report(outbox, NAMES, MQTT, limit=10)
        assert [t["target"] for t in only["targets"]] == [MQTT]
        assert {n["target"] for n in only["items"]} == {MQTT}
        assert len((await history.report(outbox, NAMES, limit=2))["items"]) == 2
        with pytest.raises(UnknownTarget, match="webhook:00aa11bb22cc33dd, mqtt|mqtt, webhook:00aa11bb22cc33dd"):
            await history.report(outbox, NAMES, "webhook:ffffffffffffffff")
    finally:
        await outbox.close()

    # Reopened (a store restarted): what waits is listed from the file, queued again (the restart retries at once).
    history = NotifyHistory()
    outbox = await opened(tmp_path / "notify.sqlite3", history)
    try:
        report = await history.report(outbox, NAMES)
        assert [(n["event_id"], n["state"], n["attempts"]) for n in report["items"]] == [(3, "retrying", 1)]
    finally:
        await outbox.close()


async def test_bounded_drops_are_one_entry_and_a_failed_state_message_is_listed(tmp_path: Path) -> None:
    history = NotifyHistory(size=5)
    outbox = await opened(tmp_path / "notify.sqlite3", history, bound=3)
    try:
        for n in range(1, 6):  # two more than the bound: the oldest two dropped, one entry each
            await outbox.put(HOOK, change(n), {"event_id": n})
        report = await history.report(outbox, NAMES)
        dropped = [n for n in report["items"] if n["state"] == "dropped"]
        assert [(n["count"], n["event_id"]) for n in dropped] == [(1, None), (1, None)]
        assert "queue was full (3)" in dropped[0]["error"]
        assert [n["event_id"] for n in report["items"] if n["state"] == "queued"] == [5, 4, 3]
        assert await outbox.discard(HOOK, "webhook removed") == 3
        await outbox.put(MQTT, b"{}", {"topic": "sht/cam0/error"})
        item = await outbox.next(MQTT, wait_s=0)
        assert item is not None
        await outbox.drop(item.id, "refused")
        report = await history.report(outbox, NAMES)
        newest = report["items"][0]
        assert (newest["state"], newest["what"], newest["error"]) == ("failed", "sht/cam0/error", "refused")
        assert (report["items"][1]["count"], report["items"][1]["error"]) == (3, "webhook removed")
        for n in range(10):
            await outbox.put(MQTT, change(n), {"topic": "sht/events"})
            item = await outbox.next(MQTT, wait_s=0)
            assert item is not None
            await outbox.done(item.id)
        report = await history.report(outbox, NAMES)
        assert len(report["items"]) == 5 and report["kept"] == 5, "the last 5 that ended, no more"
        assert [n["event_id"] for n in report["items"]] == [9, 8, 7, 6, 5]
    finally:
        await outbox.close()
