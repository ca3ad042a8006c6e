"""The change journal (store/notify/journal.py): a change committed in the index (a node acknowledged, a label
written) and killed before it reached the outbox is replayed at the next start, once to each subscriber that had
not put it; records every subscriber passed are deleted. A real SQLite index, a real outbox file, the store's
notify service (webhook at a port nobody answers, MQTT to a broker that is away: everything waits in the outbox),
and for the detector's label a process SIGKILLed in the window."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from shared.clock import now_us
from shared.protocol.ingest import EventRecord
from store.index import settings as stored_settings
from store.ingest.events import RowChange, ingest_event
from store.notify.journal import ChangeJournal
from store.notify.outbox import OUTBOX_FILE, Outbox
from store.notify.service import NotifyService
from store.notify.webhooks import target_of
from tests.notify.mosquitto import free_port
from tests.store.notify_journal_child import CAMERA, HOOK, IN_DOOR, passed_by_all, running_service, take_in

REPO = Path(__file__).resolve().parents[2]


async def outbox_rows(service: NotifyService) -> list[tuple[str, dict, dict]]:
    """(target, payload JSON or {}, meta) of every item waiting in the outbox, in order."""
    assert service.outbox is not None
    async with service.outbox.conn.execute("SELECT target, payload, meta FROM outbox ORDER BY id") as cur:
        rows = await cur.fetchall()
    return [(t, json.loads(p) if p and m and json.loads(m).get("topic", "sht/events") == "sht/events" else {},
             json.loads(m)) for t, p, m in rows]


def event_changes(rows: list[tuple[str, dict, dict]], target: str) -> list[tuple[str, int, str | None]]:
    """(type, event id, label) of the event changes queued for ``target`` (MQTT's retained state left out)."""
    return [(p["type"], p["after"]["id"], p["after"]["label"]) for t, p, m in rows if t == target and p]


async def wait_for(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s")


async def test_through_waits_for_a_record_appended_earlier_and_reported_later(tmp_path: Path) -> None:
    """The detector appends before it waits for the index; ingest may append after it and commit first. A mark
    must not pass the detector's record until it is reported (else a kill then would lose it)."""
    outbox = await Outbox.open(tmp_path / OUTBOX_FILE)
    try:
        journal = await ChangeJournal.open(outbox)
        label_seq = await journal.labelled(7)
        (ingest_seq,) = await journal.keep([RowChange("update", 8)])
        assert journal.reported(ingest_seq) == label_seq - 1, "the label's record is not published yet"
        assert journal.reported(label_seq) == ingest_seq
        abandoned = await journal.labelled(9)
        journal.abandon([abandoned])  # its commit failed: nothing will report it, nothing waits for it
        assert journal.reported(0) == abandoned
    finally:
        await outbox.close()


async def test_a_change_committed_but_never_published_is_replayed_once_to_each_target(tmp_path: Path,
                                                                                     index_url: str) -> None:
    """On SQLite and PostgreSQL (ingest appends inside its index transaction). Alerts only in the zone ``door``:
    the replay waits for the node's first heartbeat, which names its zones (without it, no replayed change would
    lie in the zone, and none would be an alert)."""
    mqtt_port = free_port()  # nobody listens: MQTT's items wait in the outbox
    async with running_service(tmp_path, mqtt_port, index_url) as (service, server, index):
        for key, value in (("notify", "motion"), ("notify_cooldown_s", 0), ("notify_zones", ["door"])):
            await stored_settings.set_setting(index.conn, CAMERA, key, value, "test", now_us())
        start = now_us()
        first, seqs = await take_in(server, index, EventRecord("node0", CAMERA, start, start, "motion", 0.5,
                                                               IN_DOOR, open=True))
        await passed_by_all(service, seqs[-1])
        # Killed after the second event's commit (its node acknowledged), before the feed heard of it: the row is
        # journalled and committed, never reported.
        second = await ingest_event(index.conn, EventRecord("node0", "cam2", start + 5_000_000, start + 5_000_000,
                                                            "motion", 0.5, IN_DOOR, open=True),
                                    server.ingest.journal)
        # Killed between a journal append and its commit: a record whose row never came (the node sends it again).
        assert service.journal is not None
        await service.journal.keep([RowChange("new", None, CAMERA, start + 9_000_000, "motion")])
        assert second.journal and second.ended == (first,), "the second event ended the first"

    async with running_service(tmp_path, mqtt_port, index_url, health_after_s=0.5) as (service, server, index):
        assert service.journal is not None
        journal = service.journal
        await wait_for(lambda: _empty(journal))  # every subscriber passed every record: none kept
        rows = await outbox_rows(service)
        hook = target_of(HOOK)
        # The first event's new was queued before the kill; the replay adds the first's end (the second ended
        # it) and the second's new, once each, in order, to MQTT and (alerts under notify = motion) the webhook.
        wanted = [("new", first, None), ("end", first, None), ("new", second.event_id, None)]
        assert event_changes(rows, "mqtt") == wanted
        assert event_changes(rows, hook) == wanted
        replayed = [p for t, p, _ in rows if t == hook][1:]
        assert [p["before"] for p in replayed] == [None, None], "the dead process's before is not known"
        assert [p["after"]["zones"] for p in replayed] == [["door"], ["door"]]
        assert service.feed.stats.replayed == 3


async def _empty(journal: ChangeJournal) -> bool:
    return await journal.count() == 0


@pytest.mark.timeout(60)
async def test_a_label_committed_right_before_a_kill_raises_its_alert_after_the_restart(tmp_path: Path) -> None:
    """notify = objects (the default): the label makes the alert. The detector's write path commits the label and
    the snapshot in a process that is SIGKILLed before either change reached the outbox (the feed held by the
    fault pause); the next start sends the alert (to the webhook, and the change to MQTT), once."""
    mqtt_port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.store.notify_journal_child", str(tmp_path), str(mqtt_port), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out: list[str] = []
    try:
        assert child.stdout is not None
        async with asyncio.timeout(40):
            while line := (await child.stdout.readline()).decode():
                out.append(line)
                if line.startswith("written "):
                    break
        assert out and out[-1].startswith("written "), "".join(out)
        event_id = int(out[-1].split()[1])
    finally:
        if child.returncode is None:
            child.kill()  # SIGKILL: the changes are committed, the feed holds them, nothing is in the outbox
        await child.wait()

    async with running_service(tmp_path, mqtt_port) as (service, server, index):
        async with index.conn.execute("SELECT label FROM events WHERE id = ?", (event_id,)) as cur:
            assert await cur.fetchone() == ("person",), "the label was committed before the kill"
        assert service.journal is not None
        journal = service.journal
        await wait_for(lambda: _empty(journal))
        rows = await outbox_rows(service)
        assert event_changes(rows, target_of(HOOK)) == [("update", event_id, "person")], rows
        assert event_changes(rows, "mqtt") == [("new", event_id, None), ("update", event_id, "person")]
        (alert,) = [p for t, p, _ in rows if t == target_of(HOOK)]
        assert alert["after"]["alert"] and alert["after"]["snapshot"] == f"/snapshots/{event_id}.jpg"
