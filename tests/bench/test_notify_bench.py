"""The notifications benchmark (bench/notify.py): its figures, its receiver's signature check, and a short run with a
real Mosquitto, store and node that writes its section."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest

import bench.notify as bn
from bench.notify_receivers import Arrivals, WebhookReceiver, us_of_iso
from bench.notify_report import markdown_section, summarize
from shared.clock import iso_utc
from sht.local_mosquitto import mosquitto_missing

T0 = 1_764_165_166_123_456


def change(kind: str, camera: str, start_us: int) -> dict:
    return {"type": kind, "before": None, "after": {"camera": camera, "start": iso_utc(start_us)}}


def test_latencies_are_arrival_minus_start_and_a_missing_event_fails_its_path():
    mqtt, webhook = Arrivals(), Arrivals()
    for i in range(3):
        mqtt.note(change("new", "cam0", T0 + i), T0 + i + 40_000)
        mqtt.note(change("end", "cam0", T0 + i), T0 + i + 90_000)  # only a new is timed
    mqtt.note(change("new", "cam0", T0), T0 + 900_000)  # a repeat: counted, not timed again
    webhook.note(change("new", "cam0", T0), T0 + 600_000)
    keys = [("cam0", T0 + i) for i in range(3)]
    measured = summarize("node", keys, 3.0, mqtt, webhook)
    assert measured.latency_ms["mqtt"] == [40.0, 40.0, 40.0] and mqtt.repeated_new == 1
    assert measured.ok("mqtt") and not measured.complete
    assert measured.missing["webhook"] == keys[1:] and not measured.ok("webhook")  # missing, and 600 ms anyway
    assert us_of_iso(iso_utc(T0)) == T0
    section = markdown_section([measured], {"nproc": "2"}, 3, bn.node_setup())
    assert "| event start (node's stamp) | MQTT `new` received | 3 / 3 | 40 | 40 | 40 | 40 |" in section
    assert "| webhook received | 1 / 3 | 600 |" in section and section.rstrip().count("FAIL") == 1


def test_the_receiver_refuses_a_bad_signature_and_notes_a_good_one():
    async def run() -> tuple[int, int, WebhookReceiver]:
        from aiohttp import ClientSession

        receiver = WebhookReceiver()
        receiver.secret = b"s3cret"
        await receiver.start()
        body = json.dumps(change("new", "cam1", T0)).encode()
        good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        try:
            async with ClientSession() as http:
                async with http.post(receiver.url, data=body, headers={"X-SHT-Signature": "sha256=00"}) as bad:
                    refused = bad.status
                async with http.post(receiver.url, data=body, headers={"X-SHT-Signature": good}) as ok:
                    taken = ok.status
        finally:
            await receiver.stop()
        return refused, taken, receiver

    refused, taken, receiver = asyncio.run(run())
    assert (refused, taken, receiver.bad_signatures) == (401, 200, 1)
    assert list(receiver.arrivals.new_at_us) == [("cam1", T0)]


def test_a_short_run_through_a_real_broker_store_and_node_writes_its_section(tmp_path: Path):
    why = mosquitto_missing()
    if why is not None and os.environ.get("SHT_ALLOW_MISSING_SERVERS") == "1":
        pytest.skip(why)
    if why is not None:  # fail saying what to install (never a silent skip: CI must run it)
        pytest.fail(why)
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n## Store\n\nkept\n")
    assert bn.main(["--events", "3", "--output", str(output), "--tmp", str(tmp_path)]) == 0
    text = output.read_text()
    assert "## Store\n\nkept\n" in text and "## Notifications" in text
    rows = [line for line in text.splitlines() if line.startswith("| event start") or line.startswith("| open event")]
    assert len(rows) == 4 and all("| 3 / 3 |" in row for row in rows), rows
    assert "Signatures refused by the receiver: 0;" in text
