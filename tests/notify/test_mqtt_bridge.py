"""The MQTT bridge in one process with the store's real parts (SQLite index, fleet, API, change feed, outbox) and a
real Mosquitto: commands refused and applied, notify ON/OFF, a camera gone, an outage with the order kept. The
same paths through a real ``sht store`` and ``sht node`` are in tests/system/test_mqtt.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
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
from store.notify.changes import ChangeFeed
from store.notify.mqtt.bridge import TARGET, MqttBridge
from store.notify.mqtt.options import parse_mqtt_url
from store.notify.outbox import Outbox
from store.serve.api import Api
from tests.notify.listener import Listener
from tests.notify.mosquitto import Mosquitto, running_mosquitto, speak_tls

S = 1_000_000


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto(persistent=True) as running:
        yield running


class Harness:
    def __init__(self, root: Path, index: Index, fleet: Fleet, feed: ChangeFeed, outbox: Outbox,
                 bridge: MqttBridge) -> None:
        self.root, self.index, self.fleet, self.feed = root, index, fleet, feed
        self.outbox, self.bridge = outbox, bridge

    async def event(self, start_us: int, end_us: int, is_open: bool, camera: str = "cam2") -> int:
        record = EventRecord("node0", camera, start_us, end_us, "motion", 0.5, open=is_open)
        taken = await ingest_event(self.index.conn, record)
        self.feed.ingested(EventNotice(taken.event_id, record, taken.new, taken.ended))
        return taken.event_id


@pytest.fixture
async def harness(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Harness]:
    index = await Index.open(tmp_path / "index.sqlite3")
    fleet = Fleet(index.conn, now_us)
    await fleet.hello(Hello("node0", 0, ("cam2", "cam3")), "127.0.0.1", object())
    feed = ChangeFeed(index.conn)
    feed.start()
    outbox = await Outbox.open(tmp_path / "notify.sqlite3")
    api = Api(tmp_path, index, fleet)
    prefix = tmp_path.name.replace("[", "_").replace("]", "_")[-20:]  # each test its own topics
    service = SimpleNamespace(root=tmp_path, conn=index.conn, feed=feed, outbox=outbox, server=None)
    bridge = MqttBridge(service, parse_mqtt_url(broker.url(prefix)), "test")
    await bridge.start()
    service.server = SimpleNamespace(fleet=fleet, api=api)  # as NotifyService: started, then attached
    yield Harness(tmp_path, index, fleet, feed, outbox, bridge)
    await bridge.stop()
    await feed.close()
    await outbox.close()
    await index.close()


async def test_commands_are_applied_like_sht_settings_and_bad_ones_change_nothing(
        harness: Harness, broker: Mosquitto) -> None:
    topics = harness.bridge.topics
    async with Listener(broker.port, [f"{topics.prefix}/#"]) as sub:
        await sub.wait_topic(topics.available, "online")
        await sub.wait_topic(topics.setting_state("cam2", "recording_mode"), "continuous")
        await sub.wait_topic(topics.setting_state("cam2", "notify"), "ON")
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(topics.setting_set("cam2", "recording_mode"), "motion", qos=1)
            await sub.wait_topic(topics.setting_state("cam2", "recording_mode"), "motion")
            await client.publish(topics.setting_set("cam2", "motion_sensitivity"), "0.8", qos=1)
            await sub.wait_topic(topics.setting_state("cam2", "motion_sensitivity"), "0.8")
            for command, bad, says in (("recording_mode", "sometimes", "must be one of continuous, motion, objects"),
                                       ("motion_sensitivity", "2", "between 0 and 1"),
                                       ("notify", "maybe", "ON or OFF")):
                await client.publish(topics.setting_set("cam2", command), bad, qos=1)
                error = await sub.wait_topic(topics.error("cam2"))
                body = json.loads(error.text)
                assert says in body["error"] and body["payload"] == bad, body
                sub.messages.clear()
            await client.publish(topics.setting_set("cam9", "recording_mode"), "motion", qos=1)
            assert "no camera 'cam9'" in json.loads((await sub.wait_topic(topics.error("cam9"))).text)["error"]
            # notify: OFF, then ON brings back the mode it had (motion), not the default.
            await client.publish(topics.setting_set("cam2", "notify"), "motion", qos=1)
            await client.publish(topics.setting_set("cam2", "notify"), "OFF", qos=1)
            await sub.wait_topic(topics.setting_state("cam2", "notify"), "OFF")
            await client.publish(topics.setting_set("cam2", "notify"), "ON", qos=1)
            await sub.wait_topic(topics.setting_state("cam2", "notify"), "ON")
        # A change made another way (sht settings, the console) is echoed too, at once when made on this store.
        seen = len(sub.messages)
        await stored_settings.set_setting(harness.index.conn, "cam3", "motion_sensitivity", 0.25, "tester", now_us())
        harness.feed.settings_changed("cam3")
        # within 2 s: the next turn of the watcher (1 s), not the 5 s poll of settings changed elsewhere
        await sub.wait_topic(topics.setting_state("cam3", "motion_sensitivity"), "0.25", within=2, after=seen)
    values = await stored_settings.camera_settings(harness.index.conn, "cam2")
    assert (values["recording_mode"], values["motion_sensitivity"], values["notify"]) == ("motion", 0.8, "motion")
    history = await stored_settings.history(harness.index.conn, "cam2", 100)
    assert [(h["key"], h["new"], h["changed_by"]) for h in reversed(history)] == [
        ("recording_mode", "motion", "mqtt"), ("motion_sensitivity", 0.8, "mqtt"), ("notify", "motion", "mqtt"),
        ("notify", "off", "mqtt"), ("notify", "motion", "mqtt")], "only the good commands, each by mqtt"
    assert harness.bridge.commands_refused == 4


async def test_a_camera_gone_from_the_fleet_loses_its_entities(harness: Harness, broker: Mosquitto) -> None:
    topics = harness.bridge.topics
    motion_config = f"homeassistant/binary_sensor/{topics.prefix}_cam3_motion/config"
    async with Listener(broker.port, ["homeassistant/#", f"{topics.prefix}/#"]) as sub:
        config = json.loads((await sub.wait_topic(motion_config)).text)
        assert config["state_topic"] == topics.motion("cam3")
        await sub.wait(lambda m: len({x.topic for x in m if f"{topics.prefix}_cam3_" in x.topic}) == 5,
                       what="cam3 configs: motion, mode, notify, a count and a snapshot of person")
        cam3 = {m.topic for m in sub.messages if f"{topics.prefix}_cam3_" in m.topic or "/cam3/" in m.topic}
        await harness.fleet.hello(Hello("node0", 0, ("cam2",)), "127.0.0.1", object())  # cam3 unplugged
        await sub.wait(lambda m: cam3 <= {x.topic for x in m if x.payload == b""}, what="every cam3 topic cleared")
    async with Listener(broker.port, ["homeassistant/#"]) as later:  # what a Home Assistant started now sees
        await later.wait_topic(f"homeassistant/binary_sensor/{topics.prefix}_cam2_motion/config")
        await asyncio.sleep(0.3)
        gone = f"{topics.prefix}_cam3_"
        assert not [m.topic for m in later.messages if gone in m.topic], "nothing of cam3 is retained any more"


async def test_an_outage_queues_events_in_order_and_delivers_them_after(harness: Harness, broker: Mosquitto) -> None:
    topics = harness.bridge.topics
    async with Listener(broker.port, [topics.events], identifier=f"t-{topics.prefix}", session=True) as sub:
        await sub.wait(lambda _: harness.bridge.link.state == "connected", what="the store connected")
        first = now_us()
        await harness.event(first, first + S // 2, False)
        await sub.wait(lambda m: len(m) == 2, what="the first event live")
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", broker.port) as client:  # applied now, and refused at the reconnect
            await client.publish(topics.setting_set("cam3", "recording_mode"), "objects", qos=1, retain=True)
        await sub.wait(lambda _: harness.bridge.commands_applied == 1 and not harness.outbox.counts(TARGET).queued,
                       what="the retained command applied, and its echo sent")
        broker.kill()
        await sub.wait(lambda _: harness.bridge.link.state == "failing", what="the store noticed")
        base = now_us()
        for i in range(20):
            await harness.event(base + i * S, base + i * S + S // 2, False)
        await sub.wait(lambda _: harness.outbox.counts(TARGET).queued == 40, what="each event's new and end queued")
        broker.start()
        await sub.wait(lambda m: len(m) >= 42, within=20, what="all 40 changes after the broker came back")
        await sub.wait(lambda _: harness.bridge.commands_refused == 1 and not harness.outbox.counts(TARGET).queued,
                       what="the retained command refused at the reconnect, its error sent, the outbox empty")
    changes = [(c["after"]["id"], c["type"]) for c in (json.loads(m.payload) for m in sub.messages)]
    assert len(changes) == len(set(changes)) == 42, "each once (the broker kept the subscriber's session)"
    assert [i for i, _ in changes] == sorted(i for i, _ in changes), "in order"
    assert [t for _, t in changes] == ["new", "end"] * 21
    assert harness.bridge.link.connects >= 2
    history = await stored_settings.history(harness.index.conn, "cam3", 100)
    assert [(h["key"], h["new"]) for h in history] == [("recording_mode", "objects")]


async def test_a_labelled_event_gives_counts_while_it_goes_on_and_its_snapshot(harness: Harness,
                                                                               broker: Mosquitto) -> None:
    from store.index.event_labels import EventLabelling, set_event_labelling, set_event_snapshot

    topics = harness.bridge.topics
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"  # what the camera entity shows, byte for byte
    async with Listener(broker.port, [f"{topics.prefix}/#"]) as sub:
        await sub.wait_topic(topics.label("cam2", "person"), "0")
        start = now_us()
        event_id = await harness.event(start, start, True)
        await sub.wait_topic(topics.motion("cam2"), "ON")
        await set_event_labelling(harness.index.conn, event_id,
                                  EventLabelling("person", 0.9, (0.1, 0.1, 0.2, 0.5), {"person": 2}))
        await set_event_snapshot(harness.index.conn, event_id, start, 320, 180, jpeg)
        harness.feed.labelled(event_id)
        await sub.wait_topic(topics.label("cam2", "person"), "2")
        snapshot = await sub.wait_topic(topics.snapshot("cam2", "person"))
        assert snapshot.payload == jpeg
        seen = len(sub.messages)
        await harness.event(start, start + S, False)
        await sub.wait_topic(topics.motion("cam2"), "OFF", after=seen)
        await sub.wait_topic(topics.label("cam2", "person"), "0", after=seen)
        changes = [json.loads(m.payload) for m in sub.on(topics.events)]
        assert [c["type"] for c in changes] == ["new", "update", "end"]
        assert changes[1]["after"]["label"] == "person" and changes[1]["after"]["labels"] == {"person": 2}
    async with Listener(broker.port, [topics.snapshot("cam2", "person")]) as later:  # retained for later comers
        assert (await later.wait_topic(topics.snapshot("cam2", "person"))).payload == jpeg


async def test_mqtts_checks_the_broker_against_the_ca_given(tmp_path: Path) -> None:
    from store.notify.mqtt.connection import BrokerLink
    from store.notify.mqtt.topics import Topics
    from tests.system.test_security import make_certificates

    (tmp_path / "ours").mkdir()
    (tmp_path / "other").mkdir()
    ca, cert, key = make_certificates(tmp_path / "ours")
    other_ca, _, _ = make_certificates(tmp_path / "other")
    with running_mosquitto() as secured:
        speak_tls(secured, ca, cert, key)
        connected = asyncio.Event()

        async def session(client: object) -> None:
            connected.set()
            await asyncio.sleep(3600)

        for trusted, works in ((ca, True), (other_ca, False)):
            link = BrokerLink(parse_mqtt_url(f"mqtts://127.0.0.1:{secured.port}/t", ca_file=trusted), Topics("t"))
            task = asyncio.create_task(link.run(session))
            try:
                if works:
                    await asyncio.wait_for(connected.wait(), 10)
                    assert link.health()["state"] == "connected"
                else:
                    for _ in range(100):
                        if link.state == "failing":
                            break
                        await asyncio.sleep(0.05)
                    assert link.state == "failing" and "--mqtt-ca" in (link.last_error or ""), link.health()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def test_clearing_a_retained_command_is_no_command(harness: Harness, broker: Mosquitto) -> None:
    """An empty message on a command topic is how a retained command is cleared (as the docs say to): not refused,
    no error published."""
    import aiomqtt

    topics = harness.bridge.topics
    async with Listener(broker.port, [f"{topics.prefix}/#"]) as sub:
        await sub.wait_topic(topics.available, "online")
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(topics.setting_set("cam2", "recording_mode"), b"", qos=1, retain=True)
            await client.publish(topics.setting_set("cam2", "recording_mode"), "sometimes", qos=1)
            errors = lambda: [json.loads(m.text)["payload"] for m in sub.on(topics.error("cam2"))]  # noqa: E731
            await sub.wait(lambda _: "sometimes" in errors(), what="the bad command's error")
        assert errors() == ["sometimes"], "commands are taken in order: the empty one said nothing"
    assert harness.bridge.commands_refused == 1


async def test_the_tls_context_is_made_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """It loads the CA file or the system's CAs (~15 ms), at every reconnect: never on the store's event loop."""
    import threading

    from store.notify.mqtt import connection
    from tests.notify.mosquitto import free_port

    made_on: list[threading.Thread] = []
    real = connection.tls_context

    def recorded(options: object) -> object:
        made_on.append(threading.current_thread())
        return real(options)  # type: ignore[arg-type]

    monkeypatch.setattr(connection, "tls_context", recorded)
    link = connection.BrokerLink(parse_mqtt_url(f"mqtts://127.0.0.1:{free_port()}/t"), connection.Topics("t"))
    task = asyncio.create_task(link.run(lambda client: asyncio.sleep(3600)))
    try:
        for _ in range(100):
            if link.state == "failing":
                break
            await asyncio.sleep(0.02)
        assert link.state == "failing" and made_on, link.health()
        assert threading.main_thread() not in made_on
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
