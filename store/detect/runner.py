"""``LocalDetector``: the store's own object detector, ``shared.detect.Detector`` in a child process.

Why a child process: onnxruntime is native code that may crash (a segfault takes the process with it) or hang
on a bad frame, and its inference holds a core; in a child neither touches recording or live video, and a
crashed or hung child is killed and started again. The store process never imports onnxruntime.

How a frame travels: the store copies the RGB frame into a shared-memory block (one memcpy, about 1 ms for
1080p; a pipe would copy it twice more) and sends a small request over a ``multiprocessing`` Pipe; the child
answers with the detections. One request is in flight at a time. The store waits for the answer with
``loop.add_reader`` on the pipe, so the event loop never blocks, and it sees a dead child at once (end of
file on the pipe), not after a timeout.

Failures: the detector raising on one frame (a garbage frame) is ``DetectFailed`` for that frame and the child
goes on (``errors``); a child that dies or does not answer within ``timeout_s`` is killed and started again
(``restarts``; consecutive restarts back off up to 30 s), and the frame is ``DetectFailed``. A model that does
not load makes ``start()`` raise ``DetectorError`` with the child's one-line message (what ``sht detect
--probe`` prints).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import statistics
import time
from collections import deque
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from shared.backoff import Backoff
from shared.detect.result import Detection, DetectorError

log = logging.getLogger(__name__)

MIN_SHARED_BYTES = 1024 * 1024
MAX_FRAME_BYTES = 128 * 1024 * 1024  # an 8K RGB frame is 100 MB; anything bigger is not a camera frame
STABLE_AFTER_S = 30.0  # a child that lived this long since it was ready restarts without delay
INFERENCE_WINDOW = 100


class DetectFailed(Exception):
    """The detector could not analyse one frame: that frame is lost; the detector lives on or restarts."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ---- the child ---------------------------------------------------------------------------------------------


def _child_main(conn: Connection, options: dict[str, Any]) -> None:
    """The detector process: load the model, say ready (or why not), then answer frames until told to stop or
    the store goes away (end of file on the pipe)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches the whole group: the store stops us
    try:
        from shared.detect.detector import Detector, onnxruntime_version

        detector = Detector(options["model"], options["labels"], device=options["device"],
                            threads=options["threads"], min_score=options["min_score"])
        info = detector.info
        conn.send(("ready", {
            "device": options["device"], "provider": info.provider, "model": str(info.path),
            "model_name": info.path.name, "builtin": info.builtin, "labels": list(info.labels),
            "input_size": list(info.layout.input_size), "layout": info.layout.name, "threads": info.threads,
            "onnxruntime": onnxruntime_version(),
        }))
    except DetectorError as exc:
        conn.send(("failed", str(exc)))
        return
    except Exception as exc:  # an onnxruntime that does not import, a broken install
        conn.send(("failed", f"the detector could not start: {_first_line(exc)}"))
        return
    sleep_s = float(options.get("debug_sleep_s") or 0.0)
    shared: SharedMemory | None = None
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "stop":
                return
            _, request_id, name, shape, dtype, min_score = message
            try:
                if shared is None or shared.name != name:
                    if shared is not None:
                        shared.close()
                    shared = None
                    shared = SharedMemory(name)
                frame = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shared.buf)
                if sleep_s:
                    time.sleep(sleep_s)  # test-only: a hung detector
                started = time.perf_counter()
                found = detector.detect(frame, min_score)
                ms = (time.perf_counter() - started) * 1000
                del frame  # a view of the block would keep it from closing
                conn.send(("ok", request_id, found, ms))
            except Exception as exc:
                frame = None
                conn.send(("error", request_id, str(exc) if isinstance(exc, DetectorError) else _first_line(exc)))
    finally:
        if shared is not None:
            shared.close()


# ---- the store's side --------------------------------------------------------------------------------------


class LocalDetector:
    """The detector in a child process; ``detect`` one frame at a time (``busy`` while one is in flight or the
    child is (re)starting).

    ``_debug_sleep_s`` is for tests only: each child started while it is set sleeps that long before every
    frame, to look like a hung detector (set it back to 0 before the restart to get a working child)."""

    def __init__(self, model: str | None = None, labels: str | None = None, *, device: str = "cpu",
                 threads: int = 1, min_score: float = 0.5, timeout_s: float = 10.0, start_timeout_s: float = 120.0,
                 _debug_sleep_s: float = 0.0) -> None:
        self.model, self.labels, self.device, self.threads = model, labels, device, threads
        self.min_score, self.timeout_s, self.start_timeout_s = min_score, timeout_s, start_timeout_s
        self._debug_sleep_s = _debug_sleep_s
        self.info: dict[str, Any] = {}
        self.state = "new"  # new, starting, ready, restarting, closed
        self.frames = self.errors = self.restarts = 0
        self.last_error: str | None = None
        self.inference_ms: deque[float] = deque(maxlen=INFERENCE_WINDOW)
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._shared: SharedMemory | None = None
        self._waiter: asyncio.Future[Any] | None = None  # the answer awaited: "ready" while starting, else a frame's
        self._request_id = 0
        self._in_flight: int | None = None
        self._ready_at = 0.0
        self._backoff = Backoff(initial=1.0, maximum=30.0)
        self._restarting: asyncio.Task[None] | None = None
        self._ready_event = asyncio.Event()

    # ---- lifecycle ----

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def busy(self) -> bool:
        return self.state != "ready" or self._in_flight is not None

    async def start(self) -> None:
        """Start the child and wait until its model is loaded; DetectorError with its one-line message if not."""
        if self.state not in ("new", "closed"):
            raise RuntimeError(f"LocalDetector.start() while {self.state}")
        self.state = "starting"
        try:
            await self._spawn()
        except BaseException:
            self.state = "closed"
            raise
        self.state = "ready"
        self._ready_event.set()

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Until a (re)started child is ready; for callers that would rather wait than lose frames."""
        await asyncio.wait_for(self._ready_event.wait(), timeout_s)

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = self._context.Pipe()
        options = {"model": self.model, "labels": self.labels, "device": self.device, "threads": self.threads,
                   "min_score": self.min_score, "debug_sleep_s": self._debug_sleep_s}
        process = self._context.Process(target=_child_main, args=(child, options), name="sht-detector", daemon=True)
        await asyncio.to_thread(process.start)
        child.close()  # ours: without it the child's death would not end the pipe
        self._process, self._conn = process, parent
        self._waiter = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_readable, parent)
        try:
            kind, payload = await asyncio.wait_for(asyncio.shield(self._waiter), self.start_timeout_s)
        except TimeoutError:
            await self._kill()
            raise DetectorError(f"the detector process did not load its model within {self.start_timeout_s:g} s"
                                ) from None
        except BaseException:
            await self._kill()
            raise
        if kind == "died":
            code = await self._kill()
            raise DetectorError(f"the detector process exited (code {code}) before its model was loaded")
        if kind == "failed":
            await self._kill()
            raise DetectorError(payload)
        self.info = payload
        self._ready_at = time.monotonic()

    def _on_readable(self, conn: Connection) -> None:
        """The pipe has something: an answer, or end of file when the child is gone."""
        if conn is not self._conn:
            return
        try:
            message = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            idle = self._in_flight is None
            self._deliver(("died", None))
            if idle and self.state == "ready":  # restart now, so that the next frame finds a child
                self._begin_restart("the detector process died while idle", died=True)
            return
        if message[0] in ("ready", "failed"):
            self._deliver((message[0], message[1]))
        elif message[1] == self._in_flight:
            self._in_flight = None
            self._deliver(message)

    def _deliver(self, value: Any) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    async def _kill(self) -> int | None:
        """Kill the child (if alive), reap it, close our end of the pipe; its exit code."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._in_flight = None, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join, 5.0)
        code = process.exitcode
        if code is not None:
            process.close()
        return code

    def _begin_restart(self, reason: str, died: bool = False) -> None:
        """Kill the child (hung) or reap it (``died``), and start a new one in the background."""
        self.restarts += 1
        self.last_error = reason
        self.state = "restarting"
        self._ready_event.clear()
        self._restarting = asyncio.get_running_loop().create_task(self._restart(reason, died), name="detector-restart")

    async def _restart(self, reason: str, died: bool) -> None:
        code = await self._kill()
        if died and code is not None:
            self.last_error = f"{reason} ({f'killed by signal {-code}' if code < 0 else f'exit code {code}'})"
        log.warning("object detector: %s; restarting it", self.last_error)
        if time.monotonic() - self._ready_at >= STABLE_AFTER_S:
            self._backoff.reset()
        else:
            await asyncio.sleep(self._backoff.next_delay())
        while self.state == "restarting":
            try:
                await self._spawn()
            except Exception as exc:  # DetectorError (the model no longer loads), or no process could start
                self.last_error = f"restart failed: {exc if isinstance(exc, DetectorError) else _first_line(exc)}"
                log.warning("object detector: %s", self.last_error)
                await asyncio.sleep(self._backoff.next_delay())
                continue
            if self.state != "restarting":  # closed meanwhile
                await self._kill()
                return
            self.state = "ready"
            self._ready_event.set()
            log.info("object detector: restarted (pid %s)", self.pid)

    async def close(self) -> None:
        self.state = "closed"
        self._ready_event.clear()
        if self._restarting is not None and not self._restarting.done():
            self._restarting.cancel()
            with contextlib.suppress(BaseException):
                await self._restarting
        self._deliver(("closed", None))
        if self._conn is not None and self._process is not None and self._process.is_alive():
            with contextlib.suppress(Exception):
                self._conn.send(("stop",))
            await asyncio.to_thread(self._process.join, 2.0)
        await self._kill()
        if self._shared is not None:
            self._shared.close()
            with contextlib.suppress(FileNotFoundError):
                self._shared.unlink()
            self._shared = None

    # ---- frames ----

    def _block_for(self, nbytes: int) -> SharedMemory:
        if self._shared is None or self._shared.size < nbytes:
            if self._shared is not None:
                self._shared.close()
                self._shared.unlink()
            self._shared = SharedMemory(create=True, size=max(nbytes, MIN_SHARED_BYTES))
        return self._shared

    async def detect(self, frame: np.ndarray, min_score: float | None = None, *, camera: str = "unknown",
                     capture_us: int = 0) -> list[Detection]:
        """The objects in an RGB uint8 (H, W, 3) frame, best score first; DetectFailed when this frame cannot be
        analysed (the detector is busy or restarting, raised on it, died, or hung and was killed). ``camera`` and
        ``capture_us`` are for the same call shape as RemoteDetectors (workers are told them)."""
        if self.state != "ready" or self._conn is None:
            raise DetectFailed(f"the detector is {self.state}" + (f" ({self.last_error})" if self.last_error else ""))
        if self._in_flight is not None:
            raise DetectFailed("the detector is busy with another frame (one at a time)")
        array = np.asarray(frame)
        if array.dtype.hasobject or array.nbytes > MAX_FRAME_BYTES:
            self.errors += 1
            raise DetectFailed(f"a frame must be an RGB uint8 array of at most {MAX_FRAME_BYTES} bytes, got "
                               f"{array.dtype} {tuple(array.shape)}")
        block = self._block_for(array.nbytes)
        np.ndarray(array.shape, dtype=array.dtype, buffer=block.buf)[...] = array
        self._request_id += 1
        request_id = self._request_id
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._in_flight = request_id
        try:
            self._conn.send(("frame", request_id, block.name, array.shape, array.dtype.str,
                             self.min_score if min_score is None else min_score))
        except OSError:
            self._deliver(("died", None))
        try:
            answer = await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s)
        except TimeoutError:
            self.errors += 1
            self._begin_restart(f"no answer within {self.timeout_s:g} s: the detector process was killed")
            raise DetectFailed(self.last_error or "timeout") from None
        except asyncio.CancelledError:
            # The caller gave up; the child is still on the frame. Keep the timeout watch so a hang still restarts.
            loop.create_task(self._watch_abandoned(waiter, request_id))
            raise
        return self._answer(answer)

    async def _watch_abandoned(self, waiter: asyncio.Future[Any], request_id: int) -> None:
        try:
            answer = await asyncio.wait_for(waiter, self.timeout_s)
        except TimeoutError:
            if self._in_flight == request_id and self.state == "ready":
                self._begin_restart(f"no answer within {self.timeout_s:g} s: the detector process was killed")
            return
        if answer[0] == "died" and self.state == "ready":
            self._begin_restart("the detector process died on a frame", died=True)

    def _answer(self, answer: tuple[Any, ...]) -> list[Detection]:
        kind = answer[0]
        if kind == "ok":
            self.frames += 1
            self.inference_ms.append(float(answer[3]))
            return list(answer[2])
        self.errors += 1
        if kind == "error":
            self.last_error = f"a frame failed: {answer[2]}"
            raise DetectFailed(self.last_error)
        if kind == "died":
            self._begin_restart("the detector process died on a frame", died=True)
            raise DetectFailed(self.last_error or "died")
        raise DetectFailed("the detector was closed")

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state, "pid": self.pid, "frames": self.frames, "errors": self.errors,
            "restarts": self.restarts, "last_error": self.last_error,
            "inference_ms_p50": round(statistics.median(self.inference_ms), 3) if self.inference_ms else None,
        }
