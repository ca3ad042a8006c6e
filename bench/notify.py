"""Notifications (issue 17): event start → MQTT ``new`` received, and → webhook received, p50 / p99 over 100 events.

``python3 -m bench notify [--quick] [--events N] [--source node|ingest|both] [--output PATH | --no-write]``
(``just bench notify``):

1. Starts a real Mosquitto on a free loopback port (sht/local_mosquitto.py, as the tests do), a webhook receiver
   in this process that checks every signature with the store's secret (made first by ``sht webhook secret``),
   an aiomqtt subscriber on ``PREFIX/events`` (QoS 1), and a real ``sht store --mqtt mqtt://127.0.0.1:PORT/sht
   --webhook http://127.0.0.1:PORT2/hook --detect off``.
2. **node** (the real path): a real ``sht node`` with ``NODE_CAMERAS`` simulated cameras, each a looping scenario
   in which a walker crosses the picture every ``LOOP_S`` seconds (cameras out of phase), so motion events start
   about once a second. The latency is measured from the event's start as the node stamps it (the capture time
   of its first moving frame, wall clock of this same machine) to the ``new``'s arrival: it includes the node's
   motion detection confirming the event (``start_frames`` frames), its upload, the store's ingest, the change
   feed, the alert rules, the durable outbox and the broker or the HTTP POST.
3. **ingest** (the store's part alone): open events sent through the store's real /ingest WebSocket as a node
   sends them (signed node token, each acknowledged), one every ``INGEST_INTERVAL_S`` over 4 cameras, each closed
   before its camera's next; measured from the send (the record's start is the send time).
4. Every camera's alert rules let every motion event through to the webhook (``notify = motion``,
   ``notify_cooldown_s = 0``; the default ``objects`` mode waits for the detector's label, and the cooldown
   would hold back all but one event a minute). Only events that start after those settings are counted; the
   first N by start, as the store's index has them, are the ones timed: each must arrive on both (the count is
   in the table).
5. Prints the table and replaces the "## Notifications" section of docs/benchmarks.md (``--quick``, 10 events,
   writes nothing unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.notify_receivers import EventKey, MqttSubscriber, WebhookReceiver
from bench.notify_report import Measured, machine_lines, markdown_section, print_table, summarize
from bench.processes import spawn_sht, stop_in_order
from bench.report import replace_section
from shared.clock import now_us
from sht.local_mosquitto import Mosquitto, mosquitto_missing, running_mosquitto
from sht.local_servers import free_port

SECTION = "## Notifications"
PREFIX = "sht"
FULL_EVENTS, QUICK_EVENTS = 100, 10
NODE_ID, INGEST_NODE = "bench-notify", "bench-ingest"
NODE_CAMERAS = 5
LOOP_S = 5.0  # each camera's scenario repeats: a walker crosses, then quiet (> the node's quiet_s of 2 s)
WALK_S = 1.5
SIZE, FPS = "320x180", 15  # the node's default frame rate; a small picture keeps the shared CPUs for the rest
INGEST_CAMERAS = 4
INGEST_INTERVAL_S = 0.3
DELIVERY_WAIT_S = 15.0  # after the last counted event is in the index: time for its notifications to arrive
START_TIMEOUT_S = 60.0

Say = Callable[[str], None]  # a progress line


@dataclass
class Bench:
    tmp: Path
    broker: Mosquitto
    receiver: WebhookReceiver
    subscriber: MqttSubscriber
    store_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.tmp / "store"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.store_port}"

    def spawn(self, name: str, *args: str, token: str | None = None) -> subprocess.Popen:
        proc = spawn_sht(self.tmp / f"{name}.log", *args, token=token, die_with_parent=True)
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 8) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_health(self, url: str, proc: subprocess.Popen, name: str) -> None:
        from urllib.request import urlopen

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sht {name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                await asyncio.to_thread(lambda: urlopen(url + "/health", timeout=1.0).read())
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sht {name} did not answer on {url} within {START_TIMEOUT_S:.0f} s:\n"
                                       f"{self.log_tail(name)}") from None
                await asyncio.sleep(0.2)

    async def start_store(self) -> None:
        from store.admin.keys import KeyStore

        keys = KeyStore(self.root)
        self.tokens = {name: keys.issue(role, subject, 6 * 3600)[0] for name, role, subject in (
            ("node", "node", NODE_ID), ("ingest", "node", INGEST_NODE), ("viewer", "viewer", "bench-notify"),
            ("admin", "admin", "bench-notify"))}
        # Made now, as sht webhook secret shows it to a user; the store keeps and signs with it.
        made = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "sht", "webhook", "secret", "--root",
                                                        str(self.root)], capture_output=True, text=True, check=True,
                                       timeout=60)
        self.receiver.secret = made.stdout.strip().encode()
        store = self.spawn("store", "store", "--root", str(self.root), "--host", "127.0.0.1", "--port",
                           str(self.store_port), "--detect", "off", "--max-age", "off", "--min-free", "off",
                           "--mqtt", self.broker.url(PREFIX), "--webhook", self.receiver.url)
        await self.wait_health(self.url, store, "store")

    async def alert_on_every_motion(self, cameras: Sequence[str]) -> None:
        """notify = motion, no cooldown, on each camera (retried until the store knows the camera)."""
        from shared.query_client import StoreClient, StoreError

        deadline = time.monotonic() + START_TIMEOUT_S
        async with StoreClient(self.url, token=self.tokens["admin"]) as client:
            for camera in cameras:
                for key, value in (("notify", "motion"), ("notify_cooldown_s", 0)):
                    while True:
                        try:
                            await client.call("set_setting", camera=camera, key=key, value=value)
                            break
                        except StoreError:
                            if time.monotonic() > deadline:
                                raise
                            await asyncio.sleep(0.2)

    async def indexed(self, cameras: Sequence[str], from_us: int) -> list[EventKey]:
        """The motion events of ``cameras`` that start at or after ``from_us``, in start order, from the index."""
        from shared.query_client import StoreClient

        keys: list[EventKey] = []
        async with StoreClient(self.url, token=self.tokens["viewer"]) as client:
            after = None
            while True:
                page = await client.call("events", cameras=list(cameras), from_us=from_us, to_us=now_us() + 60_000_000,
                                         kind="motion", limit=1000, after=after)
                keys += [(item["camera"], item["start_us"]) for item in page.get("items", [])
                         if item["start_us"] >= from_us]
                if not (after := page.get("next")):
                    break
        return sorted(keys, key=lambda k: (k[1], k[0]))

    def stop(self) -> None:
        stop_in_order(reversed(self.procs))  # nodes before the store


# --- the sources -----------------------------------------------------------------------------------

def scenario(index: int) -> dict:
    offset = index * (LOOP_S - WALK_S) / NODE_CAMERAS  # out of phase: events spread over each loop
    y = 0.35 + 0.1 * (index % 3)
    return {"seed": 11 + index, "noise": 2.0, "illumination": {"period_s": 120, "amplitude": 0.03}, "loop_s": LOOP_S,
            "objects": [{"start": offset, "end": offset + WALK_S, "size": [30, 60], "from": [0.1, y],
                         "to": [0.9, y + 0.1], "luma": 230}]}


async def from_node(bench: Bench, events: int, say: Say) -> tuple[list[EventKey], float]:
    """A real node's motion events: (the first ``events`` counted, seconds it took)."""
    cameras = [f"cam{i}" for i in range(NODE_CAMERAS)]
    args: list[str] = []
    for i, camera in enumerate(cameras):
        path = bench.tmp / f"{camera}.json"
        path.write_text(json.dumps(scenario(i)))
        args += ["--camera", f"{camera}=synthetic:{path}"]
    node_port = free_port()
    node = bench.spawn("node", "node", "--id", NODE_ID, "--host", "127.0.0.1", "--port", str(node_port),
                       "--store", f"ws://127.0.0.1:{bench.store_port}", "--spool", str(bench.tmp / "spool"),
                       "--size", SIZE, "--fps", str(FPS), *args, token=bench.tokens["node"])
    await bench.wait_health(f"http://127.0.0.1:{node_port}", node, "node")
    await bench.alert_on_every_motion(cameras)
    from_us = now_us()
    started = time.monotonic()
    say(f"node: {NODE_CAMERAS} cameras, a walker on each every {LOOP_S:g} s; waiting for {events} events…")
    deadline = started + events * LOOP_S / NODE_CAMERAS * 3 + 60
    keys: list[EventKey] = []
    while len(keys) < events:
        if node.poll() is not None:
            raise RuntimeError(f"sht node exited with {node.returncode}:\n{bench.log_tail('node')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(keys)} of {events} motion events reached the index in "
                               f"{time.monotonic() - started:.0f} s:\n{bench.log_tail('node')}")
        await asyncio.sleep(0.5)
        keys = await bench.indexed(cameras, from_us)
    return keys[:events], time.monotonic() - started


async def from_ingest(bench: Bench, events: int, say: Say) -> tuple[list[EventKey], float]:
    """Open events sent through /ingest as a node sends them, each closed before its camera's next."""
    from dataclasses import replace

    from websockets.asyncio.client import connect

    from shared.protocol.control import Hello
    from shared.protocol.ingest import Ack, EventRecord, parse_reply
    from shared.security import bearer

    cameras = [f"ing{i}" for i in range(INGEST_CAMERAS)]
    headers = bearer(bench.tokens["ingest"])
    base = f"ws://127.0.0.1:{bench.store_port}"
    async with connect(base + "/control", additional_headers=headers) as control:
        await control.send(Hello(INGEST_NODE, 1, tuple(cameras)).serialize())  # the store knows the cameras
        await bench.alert_on_every_motion(cameras)
    say(f"ingest: {events} open events, one every {INGEST_INTERVAL_S:g} s over {INGEST_CAMERAS} cameras…")
    sent: list[EventKey] = []
    open_on: dict[str, EventRecord] = {}
    started = time.monotonic()
    async with connect(base + "/ingest", additional_headers=headers, max_size=2**20) as ws:

        async def send(record: EventRecord) -> None:
            await ws.send(record.serialize())
            reply = parse_reply(await ws.recv())
            if not isinstance(reply, Ack):
                raise RuntimeError(f"the store refused an event: {reply}")

        for i in range(events):
            camera = cameras[i % len(cameras)]
            if camera in open_on:  # a node ends one event before the next starts on the same camera
                ended = open_on.pop(camera)
                await send(replace(ended, end_us=now_us(), open=False))
            start_us = now_us()
            record = EventRecord(INGEST_NODE, camera, start_us, start_us + 100_000, "motion", 0.5,
                                 (0.2, 0.2, 0.3, 0.4), start_us, open=True)
            await send(record)
            sent.append((camera, start_us))
            open_on[camera] = record
            await asyncio.sleep(max(0.0, started + (i + 1) * INGEST_INTERVAL_S - time.monotonic()))
        for record in open_on.values():
            await send(replace(record, end_us=now_us(), open=False))
    return sent, time.monotonic() - started


# --- measuring ---------------------------------------------------------------------------------

async def await_deliveries(bench: Bench, keys: Sequence[EventKey]) -> None:
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while time.monotonic() < deadline:
        if all(k in bench.subscriber.arrivals.new_at_us and k in bench.receiver.arrivals.new_at_us for k in keys):
            return
        await asyncio.sleep(0.1)


async def measure(tmp: Path, sources: Sequence[str], events: int, say: Say) -> list[Measured]:
    results: list[Measured] = []
    with running_mosquitto() as broker:
        receiver = WebhookReceiver()
        await receiver.start()
        subscriber = MqttSubscriber(broker.port, f"{PREFIX}/events")
        await subscriber.start()
        bench = Bench(tmp, broker, receiver, subscriber)
        try:
            await bench.start_store()
            for source in sources:
                run = from_node if source == "node" else from_ingest
                keys, took_s = await run(bench, events, say)
                await await_deliveries(bench, keys)
                results.append(summarize(source, keys, took_s, subscriber.arrivals, receiver.arrivals))
                say(f"{source}: {len(keys)} events in {took_s:.0f} s")
            results[-1].notes.update(bad_signatures=receiver.bad_signatures, malformed_mqtt=subscriber.malformed,
                                     repeated_new_mqtt=subscriber.arrivals.repeated_new,
                                     repeated_new_webhook=receiver.arrivals.repeated_new)
        finally:
            await asyncio.to_thread(bench.stop)
            await subscriber.stop()
            await receiver.stop()
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.notify", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_EVENTS} events per source; writes "
                                                        "nothing unless --output")
    p.add_argument("--events", type=int, help=f"events per source (default {FULL_EVENTS}; {QUICK_EVENTS} with --quick)")
    p.add_argument("--source", choices=("node", "ingest", "both"), default="both",
                   help="node: a real sht node's motion events; ingest: events sent through /ingest (default both)")
    p.add_argument("--output", help=f"page whose '{SECTION}' section is replaced (default docs/benchmarks.md; none "
                                    "with --quick)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--tmp", help="directory for the store, the node's spool and the logs (default: the system's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = mosquitto_missing()
    try:
        import aiomqtt  # noqa: F401 - the subscriber's, and sht store --mqtt's
    except ImportError:
        missing = missing or "aiomqtt is not installed: pip install 'sht-cctv[mqtt]'"
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    load = os.getloadavg()
    events = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    sources = ("node", "ingest") if args.source == "both" else (args.source,)
    output = None if args.no_write else (Path(args.output) if args.output else
                                         (None if args.quick else Path("docs/benchmarks.md")))

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sht-bench-notify-", dir=args.tmp) as tmp:
        results = asyncio.run(measure(Path(tmp), sources, events, say))
    print_table(results, "SHT CCTV notifications" + (" (--quick: smoke run)" if args.quick else ""))
    say(f"total {time.monotonic() - started:.0f} s")
    if output is not None:
        replace_section(output, SECTION, markdown_section(results, machine_lines(load), events, node_setup(),
                                                           args.quick))
        say(f"wrote the '{SECTION}' section of {output}")
    return 0 if all(r.complete for r in results) else 1


def node_setup() -> dict[str, object]:
    return {"cameras": NODE_CAMERAS, "loop_s": LOOP_S, "walk_s": WALK_S, "size": SIZE, "fps": FPS,
            "ingest_cameras": INGEST_CAMERAS, "ingest_interval_s": INGEST_INTERVAL_S}


if __name__ == "__main__":
    sys.exit(main())
