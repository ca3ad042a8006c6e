"""``RemoteDetectors``: ``sht detect --store URL`` workers connected to the store's ``/detect``, with the
``detect(frame)`` of ``LocalDetector`` (store/detect/runner.py), so the detection service can use either.

A worker connects with a ``detector`` token and says hello (model, device, labels, input size:
shared/protocol/detect.py). Each frame goes to the next idle worker (round robin), as a JPEG scaled to at most
twice the worker's model input (the model sees no more than that, and a 1080p frame is then ~60 KB, not 6 MB).
Each worker has one frame in flight. A worker that answers an error costs that frame; one that does not answer
within ``timeout_s`` costs the frame and is dropped at once (the next frame goes to another worker or to the
store's own detector, not to it) while its connection is closed behind (a stopped process cannot answer the
close handshake: that takes the server's close timeout); one that disconnects fails its frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from shared.auth import DETECTORS, Claims
from shared.detect.result import Detection
from shared.protocol.detect import (
    DETECT_PATH,
    MAX_TEXT_BYTES,
    FrameError,
    FrameRequest,
    FrameResult,
    WorkerHello,
    parse_worker_message,
)
from shared.protocol.errors import ProtocolError
from shared.server.routes import Route, websocket_route
from store.detect.runner import DetectFailed
from store.media.thumbs import encode_jpeg

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
INPUT_MARGIN = 2  # a frame is sent at most this many times the model's input size, each way
INFERENCE_WINDOW = 100
CLOSE_POLICY = 1008  # WebSocket close code: the worker broke the protocol
CLOSE_TIMEOUT = 1011  # the worker did not answer in time


def frame_jpeg(frame: np.ndarray, input_size: tuple[int, int]) -> bytes:
    """Blocking (a worker thread): ``frame`` (RGB uint8, H x W x 3) as a JPEG scaled down (never up, aspect
    kept, even sides) to fit twice ``input_size``; ValueError for anything that is not such a frame."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 \
            or frame.shape[0] < 2 or frame.shape[1] < 2:
        shape = tuple(frame.shape) if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"a frame must be RGB uint8 (H, W, 3) of at least 2x2, got {shape}")
    height, width = frame.shape[:2]
    scale = min(1.0, INPUT_MARGIN * input_size[0] / width, INPUT_MARGIN * input_size[1] / height)
    out_w, out_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return encode_jpeg(picture, out_w, out_h)


@dataclass(eq=False)
class Worker:
    connection: ServerConnection
    hello: WorkerHello
    subject: str
    address: str
    pending: dict[int, asyncio.Future[FrameResult | FrameError | None]] = field(default_factory=dict)
    frames: int = 0
    errors: int = 0

    @property
    def name(self) -> str:
        return f"{self.subject}@{self.address}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.hello.model, "device": self.hello.device,
                "labels": list(self.hello.labels), "input_size": list(self.hello.input_size),
                "busy": bool(self.pending), "frames": self.frames, "errors": self.errors}


class RemoteDetectors:
    """The connected workers. ``on_change(connected)`` is called whenever one connects or goes (the detection
    service hands work to workers while any is connected)."""

    def __init__(self, timeout_s: float = 10.0, min_score: float = 0.5,
                 on_change: Callable[[int], None] | None = None) -> None:
        self.timeout_s, self.min_score, self.on_change = timeout_s, min_score, on_change
        self.workers: list[Worker] = []
        self.frames = self.errors = 0
        self.last_error: str | None = None
        self.inference_ms: deque[float] = deque(maxlen=INFERENCE_WINDOW)  # as the workers measured it
        self._turn = 0
        self._request_id = 0
        self._closing: set[asyncio.Task[None]] = set()

    def route(self) -> Route:
        return websocket_route(DETECT_PATH, DETECTORS, self.serve, MAX_TEXT_BYTES)

    # ---- what the service and health read ----

    @property
    def connected(self) -> int:
        return len(self.workers)

    @property
    def capacity(self) -> int:
        """Frames that may be in flight at once: one per worker."""
        return len(self.workers)

    @property
    def busy(self) -> bool:
        return all(w.pending for w in self.workers)

    @property
    def info(self) -> dict[str, Any]:
        """The workers' device and model (joined when they differ), for health."""
        def joined(values: list[str]) -> str | None:
            return ",".join(dict.fromkeys(values)) or None

        first = self.workers[0].hello if self.workers else None
        return {"device": joined([w.hello.device for w in self.workers]), "provider": None,
                "model": joined([w.hello.model for w in self.workers]),
                "labels": list(first.labels) if first else [],
                "input_size": list(first.input_size) if first else None, "workers": len(self.workers)}

    def stats(self) -> dict[str, Any]:
        return {"workers": [w.describe() for w in self.workers], "frames": self.frames, "errors": self.errors,
                "last_error": self.last_error,
                "inference_ms_p50": round(statistics.median(self.inference_ms), 3) if self.inference_ms else None}

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(len(self.workers))
            except Exception:
                log.exception("detect workers: on_change failed")

    # ---- the /detect session ----

    async def serve(self, connection: ServerConnection, claims: Claims | None) -> None:
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        subject = claims.subject if claims is not None else "worker"
        try:
            first = await asyncio.wait_for(connection.recv(), HELLO_TIMEOUT_S)
            hello = parse_worker_message(first)
            if not isinstance(hello, WorkerHello):
                raise ProtocolError("no-hello", "a worker's first message must be its hello")
        except TimeoutError:
            await connection.close(CLOSE_POLICY, f"no hello within {HELLO_TIMEOUT_S:g} s")
            return
        except ProtocolError as exc:
            log.warning("detect worker %s@%s refused: %s", subject, address, exc)
            await connection.close(CLOSE_POLICY, str(exc)[:120])
            return
        worker = Worker(connection, hello, subject, address)
        self.workers.append(worker)
        log.info("detect worker %s connected: %s on %s, labels %s", worker.name, hello.model, hello.device,
                 ", ".join(hello.labels[:8]))
        self._changed()
        try:
            async for message in connection:
                try:
                    reply = parse_worker_message(message)
                    if isinstance(reply, WorkerHello):
                        raise ProtocolError("unexpected-hello", "a worker says hello once, first")
                except ProtocolError as exc:
                    log.warning("detect worker %s: %s; disconnecting it", worker.name, exc)
                    await connection.close(CLOSE_POLICY, str(exc)[:120])
                    break
                waiter = worker.pending.get(reply.id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        finally:
            for waiter in worker.pending.values():
                if not waiter.done():
                    waiter.set_result(None)
            if self._drop(worker):  # not already dropped for a timeout
                log.info("detect worker %s disconnected", worker.name)

    # ---- frames ----

    def _idle_worker(self) -> Worker | None:
        count = len(self.workers)
        for step in range(count):
            worker = self.workers[(self._turn + step) % count]
            if not worker.pending:
                self._turn = (self._turn + step + 1) % count
                return worker
        return None

    def _fail(self, message: str, worker: Worker | None = None) -> DetectFailed:
        self.errors += 1
        if worker is not None:
            worker.errors += 1
        self.last_error = message
        return DetectFailed(message)

    async def detect(self, frame: np.ndarray, min_score: float | None = None, *, camera: str = "unknown",
                     capture_us: int = 0) -> list[Detection]:
        """The objects in an RGB frame, from the next idle worker; DetectFailed if none is idle or it fails."""
        worker = self._idle_worker()
        if worker is None:
            raise DetectFailed("no detect worker is connected" if not self.workers
                               else f"all {len(self.workers)} detect worker(s) are busy")
        self._request_id += 1
        request_id = self._request_id
        waiter: asyncio.Future[FrameResult | FrameError | None] = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = waiter  # reserved before the first await: no one else picks this worker
        try:
            try:
                jpeg = await asyncio.to_thread(frame_jpeg, frame, worker.hello.input_size)
                message = FrameRequest(request_id, camera, capture_us,
                                       self.min_score if min_score is None else min_score, jpeg).encode()
            except (ValueError, av.FFmpegError) as exc:
                raise self._fail(f"cannot send this frame to a worker: {exc}") from None
            async def send_and_wait() -> FrameResult | FrameError | None:
                await worker.connection.send(message)  # a stalled worker's full socket must not outlast the timeout
                return await asyncio.shield(waiter)

            try:
                reply = await asyncio.wait_for(send_and_wait(), self.timeout_s)
            except ConnectionClosed:
                reply = None
            except TimeoutError:
                self._disconnect(worker, f"no answer within {self.timeout_s:g} s")
                raise self._fail(f"detect worker {worker.name} did not answer within {self.timeout_s:g} s; "
                                 "disconnected it", worker) from None
        finally:
            worker.pending.pop(request_id, None)
        if reply is None:
            raise self._fail(f"detect worker {worker.name} disconnected with the frame", worker)
        if isinstance(reply, FrameError):
            raise self._fail(f"detect worker {worker.name}: {reply.message}", worker)
        self.frames += 1
        worker.frames += 1
        self.inference_ms.append(reply.ms)
        return list(reply.detections)

    def _drop(self, worker: Worker) -> bool:
        """Take ``worker`` off the list (it gets no more frames); False if it was off already."""
        if worker not in self.workers:
            return False
        self.workers.remove(worker)
        self._changed()
        return True

    def _disconnect(self, worker: Worker, reason: str) -> None:
        if self._drop(worker):
            log.warning("detect worker %s: %s; disconnecting it", worker.name, reason)
        task = asyncio.get_running_loop().create_task(worker.connection.close(CLOSE_TIMEOUT, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for worker in list(self.workers):
            with contextlib.suppress(Exception):
                await worker.connection.close(1001, "the store is stopping")
