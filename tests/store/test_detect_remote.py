"""/detect: real ``sht detect --store`` worker processes and in-test clients against a minimal server made of the
ServerShell and RemoteDetectors' route; the JPEG the store sends; the worker's errors and reconnects."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect

import store.detect.remote as remote_module
from shared.auth import AccessControl, Verifier, issue_token
from shared.detect.result import Detection
from shared.protocol.detect import FrameError, FrameResult, WorkerHello, decode_frame_request
from shared.security import bearer
from shared.server.routes import RouteTable
from shared.server.shell import ServerShell
from sht.detect_worker import decode_jpeg
from store.detect.remote import RemoteDetectors, frame_jpeg
from store.detect.runner import DetectFailed

REPO = Path(__file__).parents[2]
VTEST = REPO / "tests" / "data" / "vtest.mp4"
BLANK = np.zeros((360, 640, 3), dtype=np.uint8)
HELLO = WorkerHello("fake.onnx", "cpu", ("person",), (300, 300))


def people_frame() -> np.ndarray:
    with av.open(str(VTEST)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MiniStore:
    """The /detect route of a store and nothing else."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.changes: list[int] = []
        self.remote = RemoteDetectors(timeout_s=timeout_s, on_change=self.changes.append)
        self.shell: ServerShell | None = None
        self.port = 0

    def token(self, role: str = "detector") -> str:
        return issue_token(self.key, role, f"{role}-test", 600)[0]

    async def start(self, port: int = 0) -> None:
        self.shell = ServerShell(RouteTable([self.remote.route()]), AccessControl(Verifier(self.key.public_key())))
        self.port = await self.shell.start("127.0.0.1", port)

    async def stop(self) -> None:
        if self.shell is not None:
            await self.shell.close()
            self.shell = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def wait_workers(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.remote.connected != count:  # noqa: ASYNC110 (polling a plain attribute)
            assert time.monotonic() < deadline, f"{self.remote.connected} worker(s) connected, not {count}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def store():
    mini = MiniStore()
    await mini.start()
    yield mini
    await mini.remote.close()
    await mini.stop()


@pytest.fixture
async def workers():
    started: list[asyncio.subprocess.Process] = []

    async def start(url: str, token: str | None) -> asyncio.subprocess.Process:
        args = ["detect", "--store", url] + (["--token", token] if token else [])
        env = {k: v for k, v in os.environ.items() if k != "SHT_TOKEN"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from sht.cli import main; sys.exit(main(sys.argv[1:]))", *args,
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_worker_process_detects_for_the_store_and_its_death_is_seen(store, workers):
    process = await workers(store.url, store.token())
    await store.wait_workers(1)
    assert store.changes == [1]
    info = store.remote.info
    assert info["device"] == "cpu" and info["model"] == "person-ssdlite.onnx" and info["labels"] == ["person"]
    assert info["input_size"] == [300, 300] and info["workers"] == 1
    found = await store.remote.detect(people_frame(), camera="cam0", capture_us=123)
    assert any(d.label == "person" and d.score >= 0.7 for d in found)
    assert await store.remote.detect(BLANK) == []
    stats = store.remote.stats()
    assert stats["frames"] == 2 and stats["errors"] == 0 and stats["inference_ms_p50"] > 0
    assert stats["workers"][0]["name"] == "detector-test@127.0.0.1" and not store.remote.busy
    os.kill(process.pid, signal.SIGKILL)
    await store.wait_workers(0, 10)
    assert store.changes == [1, 0]
    with pytest.raises(DetectFailed, match="no detect worker is connected"):
        await store.remote.detect(BLANK)


async def test_a_worker_waits_for_the_store_and_comes_back_after_it_restarts(workers):
    mini = MiniStore()
    port = free_port()
    process = await workers(f"ws://127.0.0.1:{port}", mini.token())
    await asyncio.sleep(3)  # the worker is up and retrying
    await mini.start(port)
    try:
        await mini.wait_workers(1)
        await mini.stop()
        await mini.wait_workers(0, 10)
        await mini.start(port)
        await mini.wait_workers(1, 30)
        assert await mini.remote.detect(BLANK) == []
    finally:
        await mini.stop()
    process.terminate()
    await process.wait()
    err = (await process.stderr.read()).decode()
    assert "cannot reach it" in err and "retrying in" in err and err.count("connected to") == 2
    assert "Traceback" not in err


@pytest.mark.parametrize("role", ["viewer", "admin"])
async def test_a_token_the_store_refuses_ends_the_worker_with_one_line(store, workers, role):
    process = await workers(store.url, store.token(role))
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert last == (f"sht: error: {store.url}/detect: the store refused the token (403: a {role} token may not use "
                    "/detect (needs detector))")


async def test_the_worker_needs_a_token(workers):
    process = await workers("ws://127.0.0.1:9", None)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and err.decode().count("\n") == 1 and "needs a detector token" in err.decode()


async def test_a_jpeg_the_worker_cannot_decode_fails_that_frame_only(store, workers, monkeypatch):
    await workers(store.url, store.token())
    await store.wait_workers(1)
    monkeypatch.setattr(remote_module, "frame_jpeg", lambda frame, size: b"\xff\xd8 not a jpeg")
    with pytest.raises(DetectFailed, match="detect worker detector-test@127.0.0.1: cannot decode the JPEG"):
        await store.remote.detect(BLANK)
    monkeypatch.undo()
    assert store.remote.connected == 1 and await store.remote.detect(BLANK) == []
    assert store.remote.stats()["errors"] == 1 and store.remote.stats()["workers"][0]["errors"] == 1


# ---- in-test workers: the store's side exactly ---------------------------------------------------------------


async def fake_worker(store: MiniStore, answer, hello: str = HELLO.serialize(), seen: list | None = None):
    """A client that says ``hello`` and answers each frame request with ``answer(request)`` (None: no answer)."""
    async with connect(store.url + "/detect", additional_headers=bearer(store.token()), max_size=None) as ws:
        await ws.send(hello)
        async for message in ws:
            request = decode_frame_request(message)
            if seen is not None:
                seen.append(request)
            reply = answer(request)
            if reply is not None:
                await ws.send(reply.serialize())


async def test_round_robin_over_idle_workers_with_camera_and_min_score(store):
    seen_a, seen_b = [], []
    person = Detection("person", 0.9, (0.1, 0.2, 0.3, 0.4))
    tasks = [asyncio.create_task(fake_worker(store, lambda r: FrameResult(r.id, (person,), 2.0), seen=seen_a)),
             asyncio.create_task(fake_worker(store, lambda r: FrameResult(r.id, (), 3.0), seen=seen_b))]
    try:
        await store.wait_workers(2, 10)
        results = [await store.remote.detect(BLANK, 0.3, camera="cam1", capture_us=5) for _ in range(4)]
        assert sorted(len(r) for r in results) == [0, 0, 1, 1] and len(seen_a) == len(seen_b) == 2
        request = seen_a[0]
        assert (request.camera, request.capture_us, request.min_score) == ("cam1", 5, 0.3)
        assert results[0] != results[1]  # alternated
        # Two frames at once go to two workers; a third finds none idle.
        both = await asyncio.gather(store.remote.detect(BLANK), store.remote.detect(BLANK))
        assert sorted(len(r) for r in both) == [0, 1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_worker_error_fails_the_frame_and_a_silent_worker_is_disconnected():
    mini = MiniStore(timeout_s=0.5)
    await mini.start()
    try:
        erring = asyncio.create_task(fake_worker(mini, lambda r: FrameError(r.id, "no GPU memory")))
        await mini.wait_workers(1, 10)
        with pytest.raises(DetectFailed, match="no GPU memory"):
            await mini.remote.detect(BLANK)
        assert mini.remote.connected == 1
        erring.cancel()
        await mini.wait_workers(0, 10)
        silent = asyncio.create_task(fake_worker(mini, lambda r: None))
        await mini.wait_workers(1, 10)
        with pytest.raises(DetectFailed, match="did not answer within 0.5 s; disconnected it"):
            await mini.remote.detect(BLANK)
        # Dropped at once, not once the close handshake is over (a stopped process never answers it).
        assert mini.remote.connected == 0 and mini.changes == [1, 0, 1, 0]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(silent, 5)
        assert closed.value.rcvd.code == 1011
        await mini.wait_workers(0, 10)
        assert mini.remote.errors == 2 and "did not answer" in mini.remote.last_error
    finally:
        await mini.stop()


@pytest.mark.parametrize("first", ["hello?", json.dumps({"type": "result", "id": 1, "ms": 1, "detections": []}),
                                   json.dumps({"type": "hello", "model": "m", "device": "cpu", "labels": [],
                                               "input": [300, 300]})])
async def test_a_worker_that_does_not_say_hello_properly_is_closed(store, first):
    async with connect(store.url + "/detect", additional_headers=bearer(store.token())) as ws:
        await ws.send(first)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1008 and store.remote.connected == 0 and store.changes == []


async def test_a_worker_that_breaks_the_protocol_later_is_closed_and_its_frame_fails(store):
    task = asyncio.create_task(fake_worker(store, lambda r: HELLO))  # answers a frame with a second hello
    await store.wait_workers(1, 10)
    with pytest.raises(DetectFailed, match="disconnected with the frame"):
        await store.remote.detect(BLANK)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(task, 5)
    assert closed.value.rcvd.code == 1008


async def test_a_worker_that_never_says_hello_is_closed(store, monkeypatch):
    monkeypatch.setattr(remote_module, "HELLO_TIMEOUT_S", 0.3)
    async with connect(store.url + "/detect", additional_headers=bearer(store.token())) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1008 and "no hello" in closed.value.rcvd.reason


# ---- the JPEG the store sends ---------------------------------------------------------------------------------


def test_frames_are_sent_scaled_to_twice_the_model_input_never_up():
    big = np.zeros((1080, 1920, 3), dtype=np.uint8)
    picture = decode_jpeg(frame_jpeg(big, (300, 300)))
    assert (picture.width, picture.height) == (600, 338)
    picture = decode_jpeg(frame_jpeg(big, (640, 640)))
    assert (picture.width, picture.height) == (1280, 720)
    picture = decode_jpeg(frame_jpeg(np.zeros((240, 320, 3), dtype=np.uint8), (300, 300)))
    assert (picture.width, picture.height) == (320, 240)


def test_people_survive_the_jpeg():
    from shared.detect.detector import Detector

    detector = Detector()
    frame = people_frame()
    direct = [d for d in detector.detect(frame) if d.score >= 0.7]
    sent = [d for d in detector.detect(decode_jpeg(frame_jpeg(frame, (300, 300)))) if d.score >= 0.7]
    assert direct and len(sent) >= len(direct) - 1


@pytest.mark.parametrize("frame", [np.zeros((10, 10), np.uint8), np.zeros((4, 4, 3), np.float32),
                                   np.zeros((1, 5, 3), np.uint8), "not an array"])
def test_what_is_not_a_frame_is_refused(frame):
    with pytest.raises(ValueError, match="a frame must be RGB uint8"):
        frame_jpeg(frame, (300, 300))


async def test_a_bad_frame_fails_in_the_store_and_keeps_the_worker(store):
    task = asyncio.create_task(fake_worker(store, lambda r: FrameResult(r.id, (), 1.0)))
    try:
        await store.wait_workers(1, 10)
        with pytest.raises(DetectFailed, match="cannot send this frame"):
            await store.remote.detect(np.zeros((10, 10), np.uint8))
        assert await store.remote.detect(BLANK) == [] and not store.remote.busy
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
