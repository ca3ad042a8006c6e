"""Home Assistant discovery payloads against Home Assistant's documented schema, and the topics and options.

The tables below are the configuration variables each MQTT component documents, copied from the Home Assistant
documentation (home-assistant.io, source/_integrations/<component>.mqtt.markdown, the ``{% configuration %}``
blocks; read at binary_sensor fbc3a3b3, sensor as of the version with ``suggested_display_precision``, camera
9e4a69ab, select 03048e09 plus the later ``encoding``/``entity_picture``, switch 04c35f18 plus the later
``device_class``/``command_template``/``entity_category``), and the discovery topic rules of
home-assistant.io/integrations/mqtt/#discovery-messages: ``<discovery_prefix>/<component>/[<node_id>/]<object_id>
/config``, ids of ``[a-zA-Z0-9_-]``. ``platform`` is documented as "only allowed and required in device discovery
messages": our single-component configs must not carry it.
"""

from __future__ import annotations

import json
import re

import pytest

from shared.settings import RECORDING_MODES
from store.notify.mqtt import discovery
from store.notify.mqtt.discovery import CameraEntities, camera_configs
from store.notify.mqtt.options import MqttOptions, mqtt_from_args, parse_mqtt_url
from store.notify.mqtt.topics import Topics, label_level

# Every component's common variables (each page documents them all).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "object_id", "unique_id", "qos"}
ALLOWED: dict[str, set[str]] = {
    "binary_sensor": COMMON | {"device_class", "expire_after", "force_update", "off_delay", "payload_available",
                               "payload_not_available", "payload_off", "payload_on", "state_topic",
                               "value_template"},
    "sensor": COMMON | {"device_class", "expire_after", "force_update", "last_reset_value_template", "options",
                        "payload_available", "payload_not_available", "suggested_display_precision", "state_class",
                        "state_topic", "unit_of_measurement", "value_template"},
    "camera": (COMMON - {"qos"}) | {"image_encoding", "topic"},
    "select": COMMON | {"command_template", "command_topic", "optimistic", "options", "retain", "state_topic",
                        "value_template"},
    "switch": COMMON | {"command_template", "command_topic", "device_class", "optimistic", "payload_available",
                        "payload_not_available", "payload_off", "payload_on", "retain", "state_off", "state_on",
                        "state_topic", "value_template"},
}
REQUIRED: dict[str, set[str]] = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "camera": {"topic"},
                                 "select": {"command_topic", "options"}, "switch": {"command_topic"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}
ID = re.compile(r"[a-zA-Z0-9_-]+")
TOPIC = re.compile(r"[^+#\x00]+")

TOPICS = Topics("sht")
CAM = CameraEntities("cam2", "node0", ("person", "traffic light"))


def configs() -> dict[str, dict]:
    return camera_configs(TOPICS, "homeassistant", CAM, "0.1.0")


def test_each_config_has_only_documented_keys_and_every_required_one() -> None:
    found = configs()
    assert sorted(t.split("/")[1] for t in found) == sorted(
        ["binary_sensor", "select", "switch", "sensor", "sensor", "camera", "camera"])
    for topic, payload in found.items():
        prefix, component, object_id, last = topic.split("/")
        assert (prefix, last) == ("homeassistant", "config") and ID.fullmatch(object_id), topic
        assert object_id == payload["unique_id"], "object id = unique id, as Home Assistant recommends"
        assert not set(payload) - ALLOWED[component], f"{component}: undocumented {set(payload) - ALLOWED[component]}"
        assert REQUIRED[component] <= set(payload), f"{component}: missing {REQUIRED[component] - set(payload)}"
        assert "platform" not in payload
        assert set(payload["device"]) <= DEVICE_KEYS and payload["device"]["identifiers"]
        assert payload["availability_mode"] in ("all", "any", "latest")
        for item in payload["availability"]:
            assert set(item) <= AVAILABILITY_KEYS and "topic" in item
        for key in ("state_topic", "command_topic", "topic"):
            if key in payload:
                assert TOPIC.fullmatch(payload[key]) and payload[key].startswith("sht/cam2/"), payload[key]
        json.loads(discovery.encode(payload))  # a JSON dictionary, as the docs require


def test_the_entities_say_what_they_are_and_where_their_state_is() -> None:
    by_id = {p["unique_id"]: p for p in configs().values()}
    motion = by_id["sht_cam2_motion"]
    assert (motion["state_topic"], motion["device_class"], motion["payload_on"], motion["payload_off"]) == (
        "sht/cam2/motion", "motion", "ON", "OFF")
    select = by_id["sht_cam2_recording_mode"]
    assert select["options"] == list(RECORDING_MODES) == ["continuous", "motion", "objects"]
    assert (select["command_topic"], select["state_topic"]) == ("sht/cam2/recording_mode/set",
                                                                 "sht/cam2/recording_mode/state")
    switch = by_id["sht_cam2_notify"]
    assert (switch["command_topic"], switch["state_topic"]) == ("sht/cam2/notify/set", "sht/cam2/notify/state")
    assert by_id["sht_cam2_person_count"]["state_topic"] == "sht/cam2/person"
    assert by_id["sht_cam2_traffic_light_count"]["state_topic"] == "sht/cam2/traffic_light"
    assert by_id["sht_cam2_traffic_light_snapshot"]["topic"] == "sht/cam2/traffic_light/snapshot"
    for payload in by_id.values():
        assert payload["device"] == {"identifiers": ["sht_node_node0"], "name": "node0", "manufacturer": "SHT CCTV",
                                     "model": "SHT node", "sw_version": "0.1.0"}
        assert payload["availability"][0] == {"topic": "sht/available", "payload_available": "online",
                                               "payload_not_available": "offline"}
        assert payload["availability"][1]["topic"] == "sht/node0/state"
        assert payload.get("retain", False) is False, "commands are never retained"


def test_unique_ids_are_stable_and_differ_by_prefix_and_camera() -> None:
    assert configs() == configs()
    other_prefix = camera_configs(Topics("home/sht"), "homeassistant", CAM, "0.1.0")
    other_camera = camera_configs(TOPICS, "homeassistant", CameraEntities("cam3", "node0", CAM.labels), "0.1.0")
    ids = {p["unique_id"] for p in configs().values()}
    assert not ids & {p["unique_id"] for p in other_prefix.values()}
    assert not ids & {p["unique_id"] for p in other_camera.values()}
    assert all(u.startswith("home_sht_cam2_") for u in (p["unique_id"] for p in other_prefix.values()))


def test_topics_and_commands() -> None:
    assert TOPICS.available == "sht/available" and TOPICS.events == "sht/events"
    assert TOPICS.node_state("node0") == "sht/node0/state" and TOPICS.error("cam2") == "sht/cam2/error"
    assert TOPICS.command_filters() == ["sht/+/recording_mode/set", "sht/+/motion_sensitivity/set",
                                        "sht/+/notify/set"]
    assert TOPICS.parse_command("sht/cam2/recording_mode/set") == ("cam2", "recording_mode")
    assert TOPICS.parse_command("sht/cam2/notify/set") == ("cam2", "notify")
    for other in ("sht/cam2/recording_mode/state", "sht/cam2/retention_days/set", "shtx/cam2/notify/set",
                  "sht//notify/set", "sht/a/b/notify/set"):
        assert TOPICS.parse_command(other) is None, other
    assert Topics("home/sht").parse_command("home/sht/cam2/notify/set") == ("cam2", "notify")
    assert label_level("traffic light") == "traffic_light" and label_level("a/b+#") == "a_b__"
    # A custom model's label named like a camera's own topic gets a level of its own.
    assert (TOPICS.label("cam2", "motion"), TOPICS.snapshot("cam2", "error")) == (
        "sht/cam2/motion_label", "sht/cam2/error_label/snapshot")
    assert TOPICS.label("cam2", "state") == "sht/cam2/state_label" != TOPICS.node_state("cam2")
    assert TOPICS.label("cam2", "motion") != TOPICS.motion("cam2")
    assert TOPICS.label("cam2", "person") == "sht/cam2/person"


def test_broker_urls() -> None:
    assert parse_mqtt_url("mqtt://broker", environ={}) == MqttOptions("broker", 1883)
    assert parse_mqtt_url("mqtts://u:p%40ss@broker:1884/home/sht", environ={}) == MqttOptions(
        "broker", 1884, "home/sht", "u", "p@ss", tls=True)
    assert parse_mqtt_url("mqtts://broker", environ={}).port == 8883
    assert parse_mqtt_url("mqtt://u@broker", environ={"SHT_MQTT_PASSWORD": "x"}).password == "x"
    assert parse_mqtt_url("mqtt://u:p@broker", environ={}).describe() == "mqtt://u@broker:1883/sht"
    for bad, says in (("http://broker", "mqtt://"), ("mqtt://", "no broker host"), ("mqtt://b:99999", "port"),
                      ("mqtt://b/a/+/c", "wildcards"), ("mqtt://b/$SYS", "'$'"), ("mqtt://u:secret@b?x=1", "***")):
        with pytest.raises(ValueError, match=re.escape(says)) as raised:
            parse_mqtt_url(bad, environ={})
        assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match="mqtts://"):
        parse_mqtt_url("mqtt://b", ca_file="/etc/hostname", environ={})


def test_flags() -> None:
    import argparse

    from store.notify.mqtt.options import add_mqtt_flags

    parser = argparse.ArgumentParser()
    add_mqtt_flags(parser)
    assert mqtt_from_args(parser.parse_args([])) is None
    options = mqtt_from_args(parser.parse_args(["--mqtt", "mqtt://b/x", "--mqtt-discovery", "off"]))
    assert options is not None and options.prefix == "x" and options.discovery_prefix is None
    with pytest.raises(ValueError, match="--mqtt-ca needs --mqtt"):
        mqtt_from_args(parser.parse_args(["--mqtt-ca", "ca.pem"]))


def test_a_store_without_mqtt_never_loads_the_client() -> None:
    import subprocess
    import sys

    code = ("import sys, sht.cli, store.app; sht.cli.build_parser().parse_args(['store']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiomqtt', 'paho')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
