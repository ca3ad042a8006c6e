"""Webhooks from a real ``sht store``: events taken in through its real /ingest, a receiver in the test that checks
every signature. new then end, signed with the store's secret or a webhook's own; filters; a 500 retried; a 400
dropped and counted; a store SIGKILLed with webhooks undelivered (receiver down) delivers them all after its
restart, in order."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from websockets.sync.client import connect

from shared.protocol.control import Heartbeat, Hello
from shared.protocol.health import CameraHealth, NamedZone, NodeHealth
from shared.protocol.ingest import EventRecord
from shared.query_client import StoreClient, StoreError
from tests.system.conftest import Processes, free_port, get_json, tokens, wait_for_health

T0 = 1_764_165_166_000_000
OWN_SECRET = "a-webhook-of-its-own-0123"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    at: float  # time.time()

    @property
    def change(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """An HTTP server that records every POST and answers by path: /ok 200, /flaky 500 to each delivery's first
    try then 200, /refuse 400."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    tries = sum(1 for r in receiver.received if r.path == self.path
                                and r.headers.get("X-SHT-Delivery") == self.headers.get("X-SHT-Delivery"))
                    status = {"/refuse": 400, "/flaky": 500 if tries == 0 else 200}.get(self.path, 200)
                    receiver.received.append(Received(self.path, dict(self.headers), body, status, time.time()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def wait(self, path: str, n: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.at(path)) < n:
            assert time.monotonic() < deadline, f"{path}: {len(self.at(path))} of {n} requests came"
            time.sleep(0.02)
        return self.at(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_signature(request: Received, secret: str) -> None:
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-SHT-Signature"], expected), f"bad signature on {request.path}"
    assert request.headers["X-SHT-Event-Id"] == str(request.change["after"]["id"])
    assert request.headers["X-SHT-Event-Type"] == request.change["type"]
    assert request.headers["Content-Type"] == "application/json"


def store_secret(root: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "sht", "webhook", "secret", "--root", str(root)],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def send_events(port: int, token: str, records: list[EventRecord]) -> None:
    """Through the store's real /ingest, as a node sends them; each acknowledged."""
    with connect(f"ws://127.0.0.1:{port}/ingest", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        for record in records:
            ws.send(record.serialize())
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] == "ack", reply


DOOR = NamedZone("door", ((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))


def announce(port: int, token: str, cameras: tuple[str, ...]) -> None:
    """A node's hello and one heartbeat on /control: the store knows its cameras (their settings can be set) and
    their named zones (each has the zone "door", the bottom right quarter)."""
    health = NodeHealth(node="node0", cameras={cam: CameraHealth(state="up", zones=(DOOR,)) for cam in cameras})
    with connect(f"ws://127.0.0.1:{port}/control", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(Hello("node0", 1, cameras).serialize())
        ws.send(Heartbeat(health).serialize())
        time.sleep(0.3)


def call(port: int, token: str, method: str, **params: Any) -> Any:
    async def run() -> Any:
        async with StoreClient(f"http://127.0.0.1:{port}", token=token) as store:
            return await store.call(method, **params)
    return asyncio.run(run())


def opened(camera: str, start_us: int, box: tuple[float, float, float, float] = (0.1, 0.2, 0.3, 0.4)) -> EventRecord:
    return EventRecord("node0", camera, start_us, start_us + 100_000, "motion", 0.4, box, start_us, open=True)


def closed(record: EventRecord) -> EventRecord:
    return replace(record, end_us=record.start_us + 3_000_000, open=False)


def targets(port: int) -> dict[str, dict[str, Any]]:
    return get_json(f"http://127.0.0.1:{port}/health")["notify"]["targets"]


@dataclass
class RunningStore:
    port: int
    root: Path
    proc: subprocess.Popen
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[RunningStore]:
    tmp = tmp_path_factory.mktemp("webhooks")
    (tmp / "logs").mkdir()
    processes = Processes(tmp / "logs")
    root, port = tmp / "store", free_port()
    proc = processes.start("store", "store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port),
                           "--detect", "off", "--webhook", receiver.url("/ok"), "--webhook", receiver.url("/flaky"),
                           "--webhook", receiver.url("/refuse"))
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc)
        keys = tokens(root)
        announce(port, keys["node"], ("cam0", "cam1"))
        for camera in ("cam0", "cam1"):  # every motion event an alert (no detector here to label them)
            call(port, keys["admin"], "set_setting", camera=camera, key="notify", value="motion")
            call(port, keys["admin"], "set_setting", camera=camera, key="notify_cooldown_s", value=0)
        yield RunningStore(port, root, proc, keys)
    finally:
        processes.stop_all()


def test_an_event_is_posted_new_at_its_start_then_end_signed_with_the_stores_secret(store: RunningStore,
                                                                                    receiver: Receiver) -> None:
    secret = store_secret(store.root)
    event = opened("cam0", T0)
    sent_at = time.time()
    send_events(store.port, store.tokens["node"], [event])
    (new,) = receiver.wait("/ok", 1)
    assert new.at - sent_at < 1.0, f"the new came {new.at - sent_at:.2f} s after the event reached the store"
    assert new.change["type"] == "new" and new.change["before"] is None
    after = new.change["after"]
    assert (after["camera"], after["node"], after["kind"], after["end"], after["alert"]) == (
        "cam0", "node0", "motion", None, True)
    assert after["start"] == "2025-11-26T13:52:46.000000Z" and after["box"] == [0.1, 0.2, 0.3, 0.4]
    send_events(store.port, store.tokens["node"], [closed(event)])
    new_again, end = receiver.wait("/ok", 2)
    assert new_again is new and end.change["type"] == "end"
    assert end.change["after"]["end"] == "2025-11-26T13:52:49.000000Z" and end.change["before"] == after
    for request in receiver.at("/ok"):
        check_signature(request, secret)

    # /flaky answered 500 to each first try: each tried again and delivered; /refuse's 400s given up, counted.
    flaky = receiver.wait("/flaky", 4)
    assert [(r.change["type"], r.status) for r in flaky] == [("new", 500), ("new", 200), ("end", 500), ("end", 200)]
    assert flaky[0].body == flaky[1].body and flaky[0].headers["X-SHT-Delivery"] == flaky[1].headers["X-SHT-Delivery"]
    refused = receiver.wait("/refuse", 2)
    assert [r.status for r in refused] == [400, 400]
    for request in (*flaky, *refused):
        check_signature(request, secret)
    deadline = time.monotonic() + 10
    while True:
        hooks = get_json(f"http://127.0.0.1:{store.port}/health")["notify"]["webhooks"]
        assert len(hooks) == 3 and {h["source"] for h in hooks} == {"flag"}
        assert {h["url"] for h in hooks} == {f"http://127.0.0.1:{receiver.port}/…"}, "no path: it may hold a token"
        counts = targets(store.port)
        flaky_counts = next((counts[h["target"]] for h in hooks if counts[h["target"]]["retried"]), {})
        refuse_counts = next((counts[h["target"]] for h in hooks if counts[h["target"]]["failed"]), {})
        if flaky_counts.get("delivered") == 2 and refuse_counts.get("failed") == 2:
            break
        assert time.monotonic() < deadline, counts
        time.sleep(0.1)
    assert (flaky_counts["retried"], flaky_counts["queued"], flaky_counts["last_error"]) == (2, 0, "HTTP 500")
    assert refuse_counts["delivered"] == 0 and refuse_counts["queued"] == 0 and "HTTP 400" in refuse_counts[
        "last_error"]
    with urlopen(f"http://127.0.0.1:{store.port}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert 'sht_notify_retried_total{target="' in metrics and "sht_notify_failed_total" in metrics


def test_a_webhook_in_the_settings_has_its_own_secret_and_filters(store: RunningStore, receiver: Receiver) -> None:
    hooks = [{"url": receiver.url("/own"), "secret": OWN_SECRET, "cameras": ["cam1"]},
             {"url": receiver.url("/door"), "zones": ["door"]}]
    answer = call(store.port, store.tokens["admin"], "set_setting", key="webhooks", value=hooks)
    assert answer["new"] == [{**hooks[0], "secret": "***"}, hooks[1]], "a secret is never read back"
    shown = call(store.port, store.tokens["viewer"], "settings")["store"]["webhooks"]
    assert shown == [{**hooks[0], "secret": "***"}, hooks[1]]
    time.sleep(0.5)  # the store reads its settings again (at once after a change made through it)
    in_door = (0.6, 0.3, 0.2, 0.5)  # its bottom-centre (0.7, 0.8) lies in the door zone
    send_events(store.port, store.tokens["node"], [closed(opened("cam0", T0 + 60_000_000, in_door)),
                                                   closed(opened("cam1", T0 + 61_000_000))])
    new, end = receiver.wait("/own", 2)
    assert [(r.change["type"], r.change["after"]["camera"]) for r in (new, end)] == [("new", "cam1"), ("end", "cam1")]
    assert new.change["after"]["zones"] == []
    for request in (new, end):
        check_signature(request, OWN_SECRET)
    door = receiver.wait("/door", 2)
    assert [(r.change["after"]["camera"], r.change["after"]["zones"]) for r in door] == [("cam0", ["door"])] * 2
    time.sleep(0.5)
    assert len(receiver.at("/own")) == 2, "cam0's events are not this webhook's"
    assert len(receiver.at("/door")) == 2, "cam1's event was in no zone"
    # Taken out of the settings: nothing more is sent to it.
    call(store.port, store.tokens["admin"], "set_setting", key="webhooks", value=[])
    time.sleep(0.5)
    send_events(store.port, store.tokens["node"], [closed(opened("cam1", T0 + 62_000_000))])
    receiver.wait("/ok", 8)  # the flag's webhook got the new events' changes (2 + 3 x 2)
    assert len(receiver.at("/own")) == 2
    with pytest.raises(StoreError, match="webhook url must be http") as refused:
        call(store.port, store.tokens["admin"], "set_setting", key="webhooks", value=[{"url": "ftp://x/y"}])
    assert refused.value.code == "bad-setting"

    # sht webhook add/list/remove: the same setting, from a shell; a secret read back as *** is kept.
    def webhook(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "sht", "webhook", *args, "--store", f"http://127.0.0.1:"
                               f"{store.port}", "--token", store.tokens["admin"]], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    webhook("add", receiver.url("/own"), "--secret", OWN_SECRET, "--camera", "cam1")
    webhook("add", receiver.url("/other"))
    listed = webhook("list")
    assert f"{receiver.url('/own')}  secret: own  only cameras=cam1" in listed and receiver.url("/other") in listed
    webhook("remove", receiver.url("/other"))
    time.sleep(0.5)
    send_events(store.port, store.tokens["node"], [opened("cam1", T0 + 63_000_000)])
    (kept,) = receiver.wait("/own", 3)[2:]
    check_signature(kept, OWN_SECRET)
    assert receiver.at("/other") == []

    # sht webhook test: a signed sample, as the store sends them.
    out = subprocess.run([sys.executable, "-m", "sht", "webhook", "test", receiver.url("/own"), "--secret",
                          OWN_SECRET], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "HTTP 200" in out.stdout, out.stdout + out.stderr
    sample = receiver.at("/own")[-1]
    check_signature(sample, OWN_SECRET)
    assert (sample.change["type"], sample.change["after"]["id"], sample.change["after"]["alert"]) == ("new", 0, True)


def test_webhooks_a_killed_store_had_not_delivered_are_delivered_after_its_restart(processes: Processes,
                                                                                   tmp_path: Path) -> None:
    receiver_port = free_port()  # nothing listens there yet: every delivery fails and waits in the outbox
    url = f"http://127.0.0.1:{receiver_port}/later"
    root, port = tmp_path / "store", free_port()
    args = ("store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port), "--detect", "off",
            "--webhook", url)
    proc = processes.start("store", *args)
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    keys = tokens(root)
    announce(port, keys["node"], ("cam0",))
    call(port, keys["admin"], "set_setting", camera="cam0", key="notify", value="motion")
    call(port, keys["admin"], "set_setting", camera="cam0", key="notify_cooldown_s", value=0)
    events = [opened("cam0", T0 + n * 10_000_000) for n in range(5)]
    send_events(port, keys["node"], [record for event in events for record in (event, closed(event))])
    deadline = time.monotonic() + 10
    while [c["queued"] for c in targets(port).values()] != [10]:
        assert time.monotonic() < deadline, targets(port)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    receiver = Receiver(receiver_port)
    try:
        restarted = processes.start("store-again", *args)
        wait_for_health(f"http://127.0.0.1:{port}", restarted)
        got = receiver.wait("/later", 10)
        secret = store_secret(root)
        for request in got:
            check_signature(request, secret)
        seen = [(r.change["after"]["start"], r.change["type"]) for r in got]
        wanted = [(f"2025-11-26T13:{52 + (46 + n * 10) // 60:02d}:{(46 + n * 10) % 60:02d}.000000Z", kind)
                  for n in range(5) for kind in ("new", "end")]
        assert seen == wanted, "each change once, in the order they happened"
        time.sleep(0.5)
        assert [c["queued"] for c in targets(port).values()] == [0]
    finally:
        receiver.close()


def test_an_event_acknowledged_right_before_a_kill_is_still_posted_after_the_restart(processes: Processes,
                                                                                   tmp_path: Path) -> None:
    """The node has its ack once the event's row is committed and never sends it again; the store is SIGKILLed
    before the change reached the outbox (SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT holds it in that window). The change
    journal, written before the commit, replays it at the restart: the receiver (down until then) gets the new,
    then the end the node sends later. Without the journal the new was lost for good."""
    receiver_port = free_port()
    url = f"http://127.0.0.1:{receiver_port}/journal"
    root, port = tmp_path / "store", free_port()
    args = ("store", "--root", str(root), "--host", "127.0.0.1", "--port", str(port), "--detect", "off",
            "--webhook", url)
    with pytest.MonkeyPatch.context() as env:  # the child inherits it; this process keeps its own
        env.setenv("SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT", "60")
        proc = processes.start("store", *args)
    wait_for_health(f"http://127.0.0.1:{port}", proc)
    keys = tokens(root)
    announce(port, keys["node"], ("cam0",))
    call(port, keys["admin"], "set_setting", camera="cam0", key="notify", value="motion")
    event = opened("cam0", T0)
    send_events(port, keys["node"], [event])  # acknowledged: the node forgets it
    deadline = time.monotonic() + 10
    while "SHT_FAULT_PAUSE_AFTER_EVENT_COMMIT: event" not in processes.log("store"):
        assert time.monotonic() < deadline, processes.log("store")[-2000:]
        time.sleep(0.05)
    assert [c["queued"] for c in targets(port).values()] in ([], [0]), "the change is not in the outbox yet"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    receiver = Receiver(receiver_port)
    try:
        restarted = processes.start("store-again", *args)
        wait_for_health(f"http://127.0.0.1:{port}", restarted)
        announce(port, keys["node"], ("cam0",))  # the node links again (the replay waits for its named zones)
        (new,) = receiver.wait("/journal", 1)
        assert (new.change["type"], new.change["before"], new.change["after"]["end"]) == ("new", None, None)
        assert new.change["after"]["start"] == "2025-11-26T13:52:46.000000Z" and new.change["after"]["alert"]
        send_events(port, keys["node"], [closed(event)])  # the node's close, later
        _, end = receiver.wait("/journal", 2)
        assert end.change["type"] == "end" and end.change["before"] == new.change["after"]
        secret = store_secret(root)
        for request in (new, end):
            check_signature(request, secret)
        time.sleep(0.5)
        assert len(receiver.at("/journal")) == 2, "each change once"
        assert "replayed 1 event changes" in processes.log("store-again")
    finally:
        receiver.close()
