"""A store's notify service and detector write path in a process of its own, for tests/store/test_notify_journal.py
to SIGKILL: ``python -m tests.store.notify_journal_child ROOT MQTT_PORT`` takes in an open event on ``cam2`` (as
/ingest does: journalled before its commit, reported after), waits until every subscriber has passed it, then
holds the change feed (the ``SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT`` pause) and writes the event's label and
snapshot through the detector's own ``_write``: both are committed in the index, neither reaches the outbox.
It prints ``written EVENT_ID`` and waits to be killed.

``running_service`` is also how the test starts the store's notify parts again on the same root."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from shared.clock import now_us
from shared.protocol.control import Hello
from shared.protocol.health import CameraHealth, NamedZone, NodeHealth
from shared.protocol.ingest import EventRecord
from store.detect.labelling import BestFrame, EventAnalysis
from store.detect.service import DetectionService
from store.detect.tracker import StationaryMemory
from store.index import settings as stored_settings
from store.index.db import Index
from store.ingest.events import EventNotice, ingest_event
from store.nodes.fleet import Fleet
from store.notify import changes
from store.notify.mqtt.options import parse_mqtt_url
from store.notify.options import NotifyOptions
from store.notify.service import NotifyService
from store.serve.api import Api

HOOK = "http://127.0.0.1:9/hook"  # the discard port: every POST fails and waits in the outbox
CAMERA = "cam2"
DOOR = NamedZone("door", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))
IN_DOOR = (0.6, 0.3, 0.2, 0.5)  # a box whose bottom-centre (0.7, 0.8) lies in the door zone


@asynccontextmanager
async def running_service(root: Path, mqtt_port: int, index_url: str | None = None,
                          health_after_s: float = 0.0) -> AsyncIterator[tuple[NotifyService, Any, Index]]:
    """The notify service as the store runs it (a webhook, MQTT to a broker that is away, the detector's write
    path attached) on a real index (default: SQLite in ``root``): (service, the server's stand-in, index). The
    node's first heartbeat (its named zone ``door``, the bottom right quarter) comes ``health_after_s`` after the
    service is attached (0: before)."""
    index = await Index.open(index_url or root / "index.sqlite3")
    fleet = Fleet(index.conn, now_us)
    await fleet.hello(Hello("node0", 0, (CAMERA,)), "127.0.0.1", object())
    health = NodeHealth(node="node0", cameras={CAMERA: CameraHealth(state="up", zones=(DOOR,))})

    async def heartbeat_later() -> None:
        await asyncio.sleep(health_after_s)
        fleet.heartbeat("node0", health)

    if not health_after_s:
        fleet.heartbeat("node0", health)
    settings = lambda camera: stored_settings.load(index.conn, camera)  # noqa: E731
    options = NotifyOptions((HOOK,), parse_mqtt_url(f"mqtt://127.0.0.1:{mqtt_port}/sht", environ={}))
    service = NotifyService(root, index.conn, settings, options)
    await service.start()
    detection = DetectionService(index.conn, None, settings, None)  # type: ignore[arg-type]
    server = SimpleNamespace(fleet=fleet, api=Api(root, index, fleet), detection=detection,
                             ingest=SimpleNamespace(on_event=None, journal=None))
    service.attach(server, detection)
    later = asyncio.create_task(heartbeat_later()) if health_after_s else None
    try:
        yield service, server, index
    finally:
        if later is not None:
            later.cancel()
        await service.stop()
        await index.close()


async def take_in(server: Any, index: Index, record: EventRecord) -> tuple[int, tuple[int, ...]]:
    """As /ingest does: the row written (journalled before its commit), then the change reported."""
    taken = await ingest_event(index.conn, record, server.ingest.journal)
    server.ingest.on_event(EventNotice(taken.event_id, record, taken.new, taken.ended, taken.journal))
    return taken.event_id, taken.journal


async def passed_by_all(service: NotifyService, seq: int, timeout_s: float = 10.0) -> None:
    """Until every subscriber's journal mark is at ``seq`` or beyond (its changes are in the outbox)."""
    journal = service.journal
    assert journal is not None
    for _ in range(int(timeout_s / 0.02)):
        if all(journal.marks.get(name, 0) >= seq for name in journal.subscribers):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"journal marks {journal.marks} never reached {seq}")


def labelled_analysis(event_id: int, start_us: int) -> EventAnalysis:
    """An analysis that confirmed one person, with a best frame to make the snapshot of."""
    analysis = EventAnalysis(event_id, CAMERA, start_us, objects={"person"}, min_score=0.3, threshold=0.5,
                             stationary=StationaryMemory())
    box = (0.2, 0.3, 0.1, 0.4)
    analysis.label, analysis.label_score, analysis.at_once = "person", 0.9, {"person": 1}
    analysis.best = BestFrame(start_us + 100_000, np.zeros((48, 64, 3), np.uint8), "person", 0.9, box)
    return analysis


async def main(root: Path, mqtt_port: int) -> None:
    async with running_service(root, mqtt_port) as (service, server, index):
        start = now_us()
        event_id, seqs = await take_in(server, index, EventRecord("node0", CAMERA, start, start, "motion", 0.5,
                                                                  open=True))
        await passed_by_all(service, seqs[-1])
        changes.FAULT_PAUSE_AFTER_EVENT_COMMIT_S = 3600.0  # the feed holds every change reported from now on
        await server.detection._write(labelled_analysis(event_id, start), final=True)
        print("written", event_id, flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
