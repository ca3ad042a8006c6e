"""``sht detect --store URL[,URL...]``: this machine's detector as a worker of the store (a GPU box, more cameras).

It connects to the store's ``/detect`` with a ``detector`` token, says hello (model, device, labels, input
size), then answers each frame the store sends: the JPEG decoded by PyAV, the detector run on it (in a thread,
so the connection's pings go on), the detections or a one-line error sent back. A lost or unreachable store is
retried with backoff (shared/backoff.py), one line said each time; a token the store refuses (401, 403) or a
store without ``/detect`` (404) ends the worker with a one-line error, since retrying would not help.

Several stores (a cluster, ``--store ws://A:8100,ws://B:8100``): the worker connects to every one of them at once,
since each store analyses the events of the nodes uploading to it and a node may be on any of them. One thread runs
the detector for all (frames queue in it, one at a time); each store's link retries on its own, and a store that
refuses the worker for good ends only that link, the worker exits when every link has ended so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import av
import websockets
from websockets.asyncio.client import ClientConnection, connect

from shared.backoff import Backoff
from shared.detect.result import Detection, DetectorError
from shared.protocol.detect import (
    DETECT_PATH,
    MAX_FRAME_MESSAGE_BYTES,
    FrameError,
    FrameRequest,
    FrameResult,
    WorkerHello,
    decode_frame_request,
    label_problem,
)
from shared.protocol.errors import ProtocolError
from shared.security import bearer, client_ssl
from shared.urls import ws_url

HANG_S = 30.0  # a frame the detector has not answered in this long: it hangs (the store gave up at 10 s)
FATAL_STATUSES = {401: "the store refused the token", 403: "the store refused the token",
                  404: "the store has no /detect endpoint (is it older than this sht?)"}


class WorkerFatal(Exception):
    """Something retrying would not mend: the token, the store's version."""


def say(message: str) -> None:
    print(f"sht detect: {message}", file=sys.stderr, flush=True)


def decode_jpeg(data: bytes) -> av.VideoFrame:
    """The store's JPEG as a video frame (the detector scales and converts it to RGB in one swscale pass)."""
    decoder = av.CodecContext.create("mjpeg", "r")
    frames = decoder.decode(av.Packet(data))
    if not frames:
        raise ValueError("the JPEG holds no picture")
    return frames[0]


def worker_hello(detector: Any, device: str) -> WorkerHello:
    """The hello for ``detector`` (shared.detect.Detector); DetectorError for a label the store would refuse."""
    info = detector.info
    for label in info.labels:
        problem = label_problem(label)
        if problem:
            where = f"labels file {info.labels_path}" if info.labels_path else f"model file {info.path}"
            raise DetectorError(f"{where}: {problem} (the store takes such labels only)")
    return WorkerHello(info.path.name, device, tuple(info.labels), tuple(info.layout.input_size))


def analyse(detector: Any, request: FrameRequest) -> FrameResult | FrameError:
    """Blocking: one frame request's answer."""
    try:
        frame = decode_jpeg(request.jpeg)
    except (av.FFmpegError, ValueError) as exc:
        return FrameError(request.id, f"cannot decode the JPEG: {exc}")
    try:
        started = time.perf_counter()
        found = detector.detect(frame, request.min_score)
        ms = (time.perf_counter() - started) * 1000
    except DetectorError as exc:
        return FrameError(request.id, str(exc))
    except Exception as exc:  # an onnxruntime failure on this frame: say so, stay up
        return FrameError(request.id, f"{type(exc).__name__}: {exc}".splitlines()[0])
    # A model may score a little over 1; the wire takes 0..1.
    clean = tuple(Detection(d.label, min(max(d.score, 0.0), 1.0), d.box) for d in found)
    return FrameResult(request.id, clean, round(ms, 3))


class DetectWorker:
    def __init__(self, store: str, token: str | None, ca: str | None, detector: Any, hello: WorkerHello,
                 backoff: Backoff | None = None, report: Callable[[str], None] = say,
                 executor: concurrent.futures.ThreadPoolExecutor | None = None) -> None:
        self.url = ws_url(store) + DETECT_PATH
        self.token, self.detector, self.hello, self.report = token, detector, hello, report
        self.ssl_context = client_ssl(self.url, ca)
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.frames = self.errors = 0
        # One thread: the Detector is not thread-safe, and one frame at a time is what the store sends. Workers of
        # several stores share the caller's (who shuts it down).
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="detect")

    async def run(self) -> None:
        """Serve the store until cancelled; WorkerFatal when the store refuses us for good."""
        try:
            while True:
                try:
                    async with connect(self.url, additional_headers=bearer(self.token), ssl=self.ssl_context,
                                       max_size=MAX_FRAME_MESSAGE_BYTES, compression=None, open_timeout=10,
                                       close_timeout=2) as ws:
                        self.backoff.reset()
                        self.report(f"connected to {self.url}: {self.hello.model} on {self.hello.device}")
                        reason = await self._session(ws)
                except websockets.InvalidStatus as exc:
                    status = exc.response.status_code
                    body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
                    if status in FATAL_STATUSES:
                        raise WorkerFatal(f"{self.url}: {FATAL_STATUSES[status]} ({status}: "
                                          f"{body or 'no reason given'})") from None
                    reason = f"refused ({status}: {body or 'no reason given'})"
                except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                    reason = f"cannot reach it: {exc or type(exc).__name__}"
                delay = self.backoff.next_delay()
                self.report(f"{self.url}: {reason}; retrying in {delay:.1f} s")
                await asyncio.sleep(delay)
        finally:
            if self._own_executor:
                self._executor.shutdown(wait=False, cancel_futures=True)

    async def _session(self, ws: ClientConnection) -> str:
        """Answer frames until the connection ends; why it ended."""
        loop = asyncio.get_running_loop()
        await ws.send(self.hello.serialize())
        try:
            async for message in ws:
                if isinstance(message, str):
                    self.report("the store sent a text message on /detect; ignored")
                    continue
                try:
                    request = decode_frame_request(message)
                except ProtocolError as exc:  # no id to answer: say so, go on
                    self.report(f"a frame request the worker cannot read: {exc}")
                    continue
                try:
                    reply = await asyncio.wait_for(
                        loop.run_in_executor(self._executor, analyse, self.detector, request), HANG_S)
                except TimeoutError:
                    # A hung onnxruntime call cannot be interrupted from Python: end the process so that its
                    # supervisor (systemd, the container) starts a fresh one; the store has moved on already.
                    self.report(f"the detector did not answer within {HANG_S:g} s: it hangs; exiting (status 3) "
                                "to be restarted")
                    os._exit(3)
                if isinstance(reply, FrameError):
                    self.errors += 1
                else:
                    self.frames += 1
                await ws.send(reply.serialize())
        except websockets.ConnectionClosed:
            pass
        close = ws.close_code, ws.close_reason
        return f"connection closed ({close[0]}{': ' + close[1] if close[1] else ''})"


async def serve_stores(stores: Sequence[str], token: str | None, ca: str | None, detector: Any,
                       hello: WorkerHello, report: Callable[[str], None] = say) -> None:
    """Work for every store of ``stores`` at once (one ``DetectWorker`` each, one detector thread for all) until
    cancelled; ``WorkerFatal`` naming every store once all of them refused the worker for good."""
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="detect")
    workers = [DetectWorker(store, token, ca, detector, hello, report=report, executor=executor) for store in stores]
    tasks = [asyncio.create_task(worker.run(), name=f"detect-worker {worker.url}") for worker in workers]
    fatal: list[str] = []
    try:
        for finished in asyncio.as_completed(tasks):
            try:
                await finished
            except WorkerFatal as exc:
                fatal.append(str(exc))
                if len(fatal) < len(tasks):
                    report(f"{exc}; still working for the other store(s)")
        raise WorkerFatal("; ".join(fatal))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        executor.shutdown(wait=False, cancel_futures=True)
