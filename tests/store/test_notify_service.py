"""NotifyService (store/notify/service.py) as the store runs it: a clean stop loses no change. Changes reported just
before the stop (an event acknowledged to its node, then SIGTERM) are published by the feed and put in the outbox
by MQTT and the webhooks before they stop, so the next start sends them. A real SQLite index, fleet and API; MQTT
aimed at a port nobody listens on (the broker away: everything must wait in the outbox)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.clock import now_us
from shared.protocol.control import Hello
from shared.protocol.ingest import EventRecord
from store.index import settings as stored_settings
from store.index.db import Index
from store.ingest.events import EventNotice, ingest_event
from store.nodes.fleet import Fleet
from store.notify.mqtt.options import parse_mqtt_url
from store.notify.options import NotifyOptions
from store.notify.outbox import OUTBOX_FILE, Outbox
from store.notify.service import NotifyService
from store.notify.webhooks import target_of
from store.serve.api import Api
from tests.notify.mosquitto import free_port

HOOK = "http://127.0.0.1:9/hook"  # the discard port: every POST fails and waits in the outbox


@pytest.mark.parametrize("mqtt", [True, False], ids=["mqtt-and-webhook", "webhook-alone"])
async def test_changes_reported_just_before_a_clean_stop_are_in_the_outbox_after_it(tmp_path: Path,
                                                                                    mqtt: bool) -> None:
    index = await Index.open(tmp_path / "index.sqlite3")
    fleet = Fleet(index.conn, now_us)
    await fleet.hello(Hello("node0", 0, ("cam2",)), "127.0.0.1", object())
    await stored_settings.set_setting(index.conn, "cam2", "notify", "motion", "test", now_us())  # webhooks get it
    options = NotifyOptions((HOOK,), parse_mqtt_url(f"mqtt://127.0.0.1:{free_port()}/sht", environ={}) if mqtt
                            else None)
    service = NotifyService(tmp_path, index.conn, lambda camera: stored_settings.load(index.conn, camera), options)
    await service.start()
    server = SimpleNamespace(fleet=fleet, api=Api(tmp_path, index, fleet), ingest=SimpleNamespace(on_event=None))
    service.attach(server)
    try:
        if mqtt:
            await asyncio.wait_for(service.mqtt._ready.wait(), 10)  # the bridge has read the cameras
        start = now_us()
        for is_open, end in ((True, start), (False, start + 500_000)):
            record = EventRecord("node0", "cam2", start, end, "motion", 0.5, open=is_open)
            taken = await ingest_event(index.conn, record)
            server.ingest.on_event(EventNotice(taken.event_id, record, taken.new, taken.ended))  # acknowledged
    finally:
        stopping = time.monotonic()
        await service.stop()  # at once: nothing reported has been read from the index yet
        stopped_in = time.monotonic() - stopping
        await index.close()
    outbox = await Outbox.open(tmp_path / OUTBOX_FILE)
    try:
        async with outbox.conn.execute("SELECT target, payload, meta FROM outbox ORDER BY id") as cur:
            rows = await cur.fetchall()
    finally:
        await outbox.close()
    events = [json.loads(p)["type"] for t, p, m in rows if t == "mqtt" and json.loads(m)["topic"] == "sht/events"]
    webhook = [json.loads(p)["type"] for t, p, _ in rows if t == target_of(HOOK)]
    assert events == (["new", "end"] if mqtt else []), rows
    assert webhook == ["new", "end"], rows
    # Promptly: the feed was closed first, so each part saw the end of the changes (not a stop timeout's 5 s).
    assert stopped_in < 3.0, f"the stop took {stopped_in:.1f} s"


class IndexAwayFleet(Fleet):
    """A fleet whose cameras cannot be listed (as when the index fails at start): MQTT keeps retrying its start-up
    read of the cameras and their settings (every 5 s), so it never becomes ready in this test."""

    def cameras(self) -> list[str]:
        raise ConnectionError("the index is out of reach")


async def test_mqtt_queues_event_changes_while_it_is_still_reading_the_cameras(tmp_path: Path) -> None:
    """Event changes go to the outbox at once, also before the bridge has read the cameras (only their retained
    state waits for that): a stop then loses none and is prompt. They used to wait in memory for the read, and a
    stop within 5 s dropped them ('changes not yet in the outbox at the stop were left')."""
    index = await Index.open(tmp_path / "index.sqlite3")
    fleet = IndexAwayFleet(index.conn, now_us)
    options = NotifyOptions((), parse_mqtt_url(f"mqtt://127.0.0.1:{free_port()}/sht", environ={}))
    service = NotifyService(tmp_path, index.conn, lambda camera: stored_settings.load(index.conn, camera), options)
    await service.start()
    server = SimpleNamespace(fleet=fleet, api=Api(tmp_path, index, fleet),
                             ingest=SimpleNamespace(on_event=None, journal=None))
    service.attach(server)
    try:
        start = now_us()
        for is_open, end in ((True, start), (False, start + 500_000)):
            record = EventRecord("node0", "cam2", start, end, "motion", 0.5, open=is_open)
            taken = await ingest_event(index.conn, record, server.ingest.journal)
            server.ingest.on_event(EventNotice(taken.event_id, record, taken.new, taken.ended, taken.journal))
        await asyncio.sleep(0.3)
        assert not service.mqtt._ready.is_set(), "the bridge is still reading the cameras"
    finally:
        stopping = time.monotonic()
        await service.stop()
        stopped_in = time.monotonic() - stopping
        await index.close()
    outbox = await Outbox.open(tmp_path / OUTBOX_FILE)
    try:
        async with outbox.conn.execute("SELECT payload, meta FROM outbox WHERE target = 'mqtt' ORDER BY id") as cur:
            rows = await cur.fetchall()
    finally:
        await outbox.close()
    assert [json.loads(p)["type"] for p, m in rows if json.loads(m)["topic"] == "sht/events"] == ["new", "end"]
    assert stopped_in < 3.0, f"the stop took {stopped_in:.1f} s"
