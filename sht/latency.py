"""A built-in live subscriber per camera that measures capture → receive latency."""

from __future__ import annotations

import asyncio
import contextlib

import websockets
from websockets.asyncio.client import connect

from shared.backoff import Backoff
from shared.clock import now_us
from shared.protocol.errors import ProtocolError
from shared.protocol.live import LiveFrame, LiveReceiver
from shared.security import bearer

MAX_SAMPLES = 100_000


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


class LatencyProbe:
    def __init__(self, camera_ports: dict[str, int], host: str = "127.0.0.1", token: str | None = None) -> None:
        self.headers = bearer(token)
        self.urls = {cam: f"ws://{host}:{port}/live/{cam}" for cam, port in camera_ports.items()}
        self.samples_ms: dict[str, list[float]] = {cam: [] for cam in camera_ports}
        self.errors: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(cam, url)) for cam, url in self.urls.items()]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _watch(self, camera: str, url: str) -> None:
        backoff = Backoff(0.2, 5.0)
        samples = self.samples_ms[camera]
        while True:
            try:
                async with connect(url, max_size=2**24, compression=None, additional_headers=self.headers) as ws:
                    backoff.reset()
                    receiver = LiveReceiver()
                    async for message in ws:
                        event = receiver.receive(message)
                        if isinstance(event, LiveFrame) and len(samples) < MAX_SAMPLES:
                            samples.append((now_us() - event.capture_us) / 1000.0)
            except (OSError, websockets.WebSocketException, ProtocolError) as exc:
                self.errors[camera] = str(exc)
            await asyncio.sleep(backoff.next_delay())

    def summary(self) -> dict[str, dict]:
        out = {}
        for cam, samples in self.samples_ms.items():
            ordered = sorted(samples)
            out[cam] = {"p50_ms": percentile(ordered, 0.5), "p99_ms": percentile(ordered, 0.99),
                        "live_frames": len(samples)}
        return out
