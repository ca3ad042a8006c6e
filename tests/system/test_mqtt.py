"""MQTT and Home Assistant with real processes: ``sht store --mqtt`` and a ``sht node`` (a quiet simulated camera),
a real Mosquitto, a subscriber in the test, events sent through the store's real /ingest socket as a node sends
them. Issue 17: an event's ``new`` within 1 s of its start and its ``end`` after; discovery configs present and
valid; a command changes the setting (history by mqtt) and the node records differently; a bad value changes
nothing and says why; the broker killed while events happen (``SHT_MQTT_OUTAGE_S``, 10 s here, 30 s in ``just
mqtt-outage``) with the store restarted in the middle: every change delivered after, in order, none twice beyond
what QoS 1 allows; a password broker: the right password works, a wrong one is a clear error in /health and the
log."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import aiomqtt
import pytest
from websockets.asyncio.client import connect

from shared.clock import iso_utc, now_us
from shared.protocol.ingest import Ack, EventRecord, parse_reply
from shared.security import bearer
from tests.notify.listener import Listener, Received
from tests.notify.mosquitto import Mosquitto, running_mosquitto
from tests.notify.test_mqtt_discovery import ALLOWED, REQUIRED
from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health

S = 1_000_000
OUTAGE_S = float(os.environ.get("SHT_MQTT_OUTAGE_S", "10"))
PREFIX = "sht"


@dataclass
class System:
    broker: Mosquitto
    processes: Processes
    root: Path
    store_port: int
    node_port: int

    @property
    def store(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    def start_store(self) -> None:
        proc = self.processes.start("store", "store", "--root", str(self.root), "--host", "127.0.0.1", "--port",
                                    str(self.store_port), "--detect", "off", "--mqtt", self.broker.url(PREFIX))
        wait_for_health(self.store, proc)

    def stop_store(self) -> None:
        store = self.processes.procs[0]
        store.terminate()
        assert store.wait(30) == 0
        self.processes.procs.remove(store)

    def mqtt_health(self) -> dict:
        return get_json(self.store + "/health")["notify"]["mqtt"]

    def history(self, camera: str) -> list[tuple]:
        with sqlite3.connect(self.root / "index.sqlite3") as conn:
            return conn.execute("SELECT key, new_value, changed_by FROM settings_history WHERE camera = ? "
                                "ORDER BY id", (camera,)).fetchall()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("mqtt")
    (tmp / "logs").mkdir()
    processes = Processes(tmp / "logs")
    with running_mosquitto(persistent=True) as broker:
        running = System(broker, processes, tmp / "store", free_port(), free_port())
        try:
            running.start_store()
            node = processes.start("node", "node", "--id", "node0", "--host", "127.0.0.1", "--port",
                                   str(running.node_port), "--store", f"ws://127.0.0.1:{running.store_port}",
                                   "--spool", str(tmp / "spool"), "--segment-seconds", "2", "--size", "320x180",
                                   "--fps", "10", "--camera", "cam0=synthetic:quiet",
                                   token=tokens(running.root)["node"])
            wait_for_health(f"http://127.0.0.1:{running.node_port}", node)
            yield running
        finally:
            processes.stop_all()


async def ingest(system: System, *records: EventRecord) -> None:
    """Send events as node0 does: over /ingest with its token, each acknowledged."""
    async with connect(f"ws://127.0.0.1:{system.store_port}/ingest",
                       additional_headers=bearer(tokens(system.root)["node"]), max_size=2**20) as ws:
        for record in records:
            await ws.send(record.serialize())
            reply = parse_reply(await ws.recv())
            assert isinstance(reply, Ack), reply


def text_of(url: str) -> str:
    with urlopen(url, timeout=5) as r:
        return r.read().decode()


def motion(start_us: int, end_us: int, is_open: bool) -> EventRecord:
    return EventRecord("node0", "cam0", start_us, end_us, "motion", 0.6, (0.2, 0.2, 0.3, 0.4), open=is_open)


def changes(messages: list[Received]) -> list[dict]:
    return [json.loads(m.payload) for m in messages if m.topic == f"{PREFIX}/events"]


def change_of(messages: list[Received], start_us: int, kind: str) -> Received | None:
    for m in messages:
        if m.topic == f"{PREFIX}/events":
            body = json.loads(m.payload)
            if body["type"] == kind and body["after"]["start"] == iso_utc(start_us):
                return m
    return None


async def until(test, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not test():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.1)


RETAINED_STATE = (f"{PREFIX}/available", f"{PREFIX}/cam0/motion", f"{PREFIX}/cam0/person",
                  f"{PREFIX}/cam0/recording_mode/state", f"{PREFIX}/cam0/notify/state", f"{PREFIX}/node0/state")


async def test_home_assistant_finds_the_camera_its_controls_and_its_node(system: System) -> None:
    async with Listener(system.broker.port, ["homeassistant/#", f"{PREFIX}/#"]) as sub:
        def ready(messages: list[Received]) -> bool:
            configs = {m.topic for m in messages if m.topic.startswith("homeassistant/") and "_cam0_" in m.topic}
            node = [json.loads(m.payload) for m in messages if m.topic == f"{PREFIX}/node0/state"]
            return len(configs) == 5 and any(n["state"] == "up" and n["cameras"]["cam0"] for n in node)

        await sub.wait(ready, within=30, what="cam0's 5 discovery configs and node0's state, up")
        assert sub.last(f"{PREFIX}/available").text == "online"
        # Each state topic published once before a second listener subscribes below: otherwise it could subscribe
        # before the bridge's first publish there and get it live, not as the retained copy under test.
        for topic in RETAINED_STATE:
            await sub.wait_topic(topic, within=30)
    configs = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.startswith("homeassistant/")}
    assert sorted(configs) == [
        "homeassistant/binary_sensor/sht_cam0_motion/config", "homeassistant/camera/sht_cam0_person_snapshot/config",
        "homeassistant/select/sht_cam0_recording_mode/config", "homeassistant/sensor/sht_cam0_person_count/config",
        "homeassistant/switch/sht_cam0_notify/config"]
    for topic, config in configs.items():
        component = topic.split("/")[1]
        assert set(config) <= ALLOWED[component] and REQUIRED[component] <= set(config), (topic, config)
        assert config["device"]["identifiers"] == ["sht_node_node0"] and config["device"]["manufacturer"] == "SHT CCTV"
    state = json.loads(sub.last(f"{PREFIX}/node0/state").payload)
    assert state["cameras"]["cam0"]["configured_fps"] == 10 and state["cpu_percent"] is not None
    # What a Home Assistant starting now gets: all of it retained.
    async with Listener(system.broker.port, ["homeassistant/#", f"{PREFIX}/#"]) as later:
        await later.wait(lambda m: len([x for x in m if x.topic in configs]) == 5, what="the retained configs")
        for topic in (*configs, *RETAINED_STATE):
            # the broker hands a new subscriber the retained copy; a live publish on the topic meanwhile comes
            # without the retain flag (MQTT 3.1.1 §3.3.1.3), so look for the retained one among them
            await later.wait(lambda m, t=topic: any(x.topic == t and x.retain for x in m), what=f"{topic}, retained")


async def test_an_event_is_on_mqtt_within_a_second_of_its_start_and_its_end_comes_after(system: System) -> None:
    latencies = []
    async with Listener(system.broker.port, [f"{PREFIX}/events", f"{PREFIX}/cam0/motion"]) as sub:
        for _ in range(5):
            start = now_us()
            await ingest(system, motion(start, start, True))
            new = await sub.wait(lambda m, s=start: change_of(m, s, "new"), within=5, what="the event's new")
            latencies.append(new.at - start / S)  # type: ignore[union-attr]
            await sub.wait_topic(f"{PREFIX}/cam0/motion", "ON")
            await ingest(system, motion(start, start + S // 2, False))
            end = await sub.wait(lambda m, s=start: change_of(m, s, "end"), within=5, what="the event's end")
            assert end.at >= new.at  # type: ignore[union-attr]
            body = json.loads(end.payload)  # type: ignore[union-attr]
            assert body["before"]["end"] is None and body["after"]["end"] == iso_utc(start + S // 2)
            assert body["after"]["camera"] == "cam0" and "alert" in body["after"]
        await sub.wait(lambda m: m[-1].topic == f"{PREFIX}/cam0/motion" and m[-1].text == "OFF", what="motion OFF")
    assert max(latencies) < 1.0, f"event start -> MQTT new: {[round(x, 3) for x in latencies]} s"


async def test_a_command_changes_the_setting_and_the_node_records_differently(system: System) -> None:
    node = f"http://127.0.0.1:{system.node_port}/health"
    before = get_json(node)["cameras"]["cam0"]
    assert before["settings"]["recording_mode"] == "continuous"
    discarded = before["recording"]["discarded_quiet"] or 0
    async with Listener(system.broker.port, [f"{PREFIX}/cam0/#"]) as sub, \
            aiomqtt.Client("127.0.0.1", system.broker.port) as client:
        await client.publish(f"{PREFIX}/cam0/recording_mode/set", "motion", qos=1)
        await sub.wait_topic(f"{PREFIX}/cam0/recording_mode/state", "motion")
        assert system.history("cam0") == [("recording_mode", '"motion"', "mqtt")]
        await until(lambda: get_json(node)["cameras"]["cam0"]["settings"]["recording_mode"] == "motion", 10,
                    "the node has the new mode")
        # Motion mode on a quiet camera: segments no event wants are no longer kept.
        await until(lambda: (get_json(node)["cameras"]["cam0"]["recording"]["discarded_quiet"] or 0) > discarded,
                    30, "the node discards quiet segments")
        await client.publish(f"{PREFIX}/cam0/recording_mode/set", "sometimes", qos=1)
        error = json.loads((await sub.wait_topic(f"{PREFIX}/cam0/error")).payload)
        assert "recording_mode must be one of continuous, motion, objects" in error["error"], error
        assert error["payload"] == "sometimes" and error["topic"] == f"{PREFIX}/cam0/recording_mode/set"
        await asyncio.sleep(0.5)
        assert system.history("cam0") == [("recording_mode", '"motion"', "mqtt")], "nothing changed"
        assert sub.last(f"{PREFIX}/cam0/recording_mode/state").text == "motion"
    assert get_json(node)["cameras"]["cam0"]["settings"]["recording_mode"] == "motion"
    assert "recording_mode/set" in system.processes.log("store") and "refused" in system.processes.log("store")


async def test_the_broker_away_loses_nothing_and_keeps_the_order_across_a_store_restart(system: System) -> None:
    broker = system.broker
    async with Listener(broker.port, [f"{PREFIX}/events"], identifier="sht-test-outage", session=True) as sub:
        await until(lambda: system.mqtt_health()["state"] == "connected", 10, "the store connected")
        broker.kill()
        await until(lambda: system.mqtt_health()["state"] == "failing", 10, "the store saw the broker go")
        sent: list[int] = []
        began = time.monotonic()
        restarted = False
        while time.monotonic() - began < OUTAGE_S:
            start = now_us()
            await ingest(system, motion(start, start, True))
            await ingest(system, motion(start, start + S // 4, False))
            sent.append(start)
            if not restarted and time.monotonic() - began > OUTAGE_S / 2:
                # What is queued is durable: a store restarted while the broker is away still delivers it.
                system.stop_store()
                system.start_store()
                restarted = True
            await asyncio.sleep(0.5)
        assert restarted
        await until(lambda: system.mqtt_health()["queued"] >= 2 * len(sent), 5, "every change queued")
        queued = get_json(system.store + "/health")["notify"]["targets"]["mqtt"]["queued"]
        metrics = await asyncio.to_thread(text_of, system.store + "/metrics")
        assert f'sht_notify_queued{{target="mqtt"}} {float(queued)}' in metrics
        assert "events queue in the outbox" in system.processes.log("store")
        broker.start()
        try:
            await sub.wait(lambda m: all(change_of(m, s, "end") for s in sent), within=30,
                           what=f"every one of the {len(sent)} events' new and end after the broker came back")
        except AssertionError as exc:
            got = [(c["after"]["start"], c["type"]) for c in changes(sub.messages)]
            raise AssertionError(f"{exc}; sent {[iso_utc(s) for s in sent]}, got {got}; store's MQTT: "
                                 f"{system.mqtt_health()}") from None
    got = [(c["after"]["start"], c["type"]) for c in changes(sub.messages)]
    wanted = [(iso_utc(s), kind) for s in sent for kind in ("new", "end")]
    deduplicated = [g for i, g in enumerate(got) if i == 0 or got[i - 1] != g]
    assert [g for g in deduplicated if g in wanted] == wanted, "every change, in order"
    assert len(got) - len(deduplicated) <= 1, "at most the one in flight twice (QoS 1)"
    assert len(sent) >= OUTAGE_S / 1.5


async def test_a_password_broker_takes_the_right_password_and_refuses_a_wrong_one_clearly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_mosquitto(users={"sht": "right-pass"}) as secured:
        processes = Processes(tmp_path)
        try:
            good, bad = free_port(), free_port()
            monkeypatch.setenv("SHT_MQTT_PASSWORD", "right-pass")  # the password kept out of the command line
            processes.start("good", "store", "--root", str(tmp_path / "good"), "--host", "127.0.0.1", "--port",
                            str(good), "--detect", "off", "--mqtt", f"mqtt://sht@127.0.0.1:{secured.port}/good")
            monkeypatch.delenv("SHT_MQTT_PASSWORD")
            processes.start("bad", "store", "--root", str(tmp_path / "bad"), "--host", "127.0.0.1", "--port",
                            str(bad), "--detect", "off", "--mqtt", secured.url("bad", "sht", "wrong-pass"))
            for port, proc in zip((good, bad), processes.procs, strict=True):
                wait_for_health(f"http://127.0.0.1:{port}", proc)
            async with Listener(secured.port, ["+/available"], username="sht", password="right-pass") as sub:
                await sub.wait_topic("good/available", "online")
            health = get_json(f"http://127.0.0.1:{bad}/health")["notify"]["mqtt"]
            assert health["state"] == "failing" and "not authori" in health["last_error"].lower(), health
            assert "check the user and password" in health["last_error"], health
            assert "check the user and password" in processes.log("bad")
            assert "wrong-pass" not in json.dumps(health) and "wrong-pass" not in processes.log("bad")
            assert get_json(f"http://127.0.0.1:{good}/health")["notify"]["mqtt"]["state"] == "connected"
        finally:
            processes.stop_all()
