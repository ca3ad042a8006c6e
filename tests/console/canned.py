"""Fixed store answers for the console's snapshot tests: no store, no clock, no randomness."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw

from console.link import FleetUpdated, Post, StoreConnected, StoreLink
from shared.protocol.fleet import FleetReport
from shared.query_client import StoreError
from shared.settings import SETTINGS as SETTING_SPECS

NOW_US = 1_795_700_000_000_000  # a fixed "now" (UTC 2026-11-26 10:13:20)
SECOND = 1_000_000
MINUTE = 60 * SECOND


def gradient(width: int = 160, height: int = 120, tint: tuple[int, int, int] = (40, 120, 200)) -> Image.Image:
    """A small picture with a recognisable shape: a gradient and a bright box."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    assert pixels is not None
    for y in range(height):
        for x in range(width):
            inside = width // 3 <= x < width // 2 and height // 3 <= y < height * 2 // 3
            pixels[x, y] = (250, 230, 60) if inside else (tint[0] * x // width, tint[1] * y // height, tint[2])
    return image


def boxed(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The picture with a red box drawn on it, as the store draws a snapshot's object."""
    out = image.copy()
    x, y, w, h = box
    ImageDraw.Draw(out).rectangle((x * out.width, y * out.height, (x + w) * out.width, (y + h) * out.height),
                                  outline=(255, 0, 0), width=max(2, out.width // 25))  # thick: seen in half blocks
    return out


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _history(n: int, cpu: Callable[[int], float], drops: Callable[[int], int], spool: Callable[[int], int]
             ) -> list[dict[str, Any]]:
    return [{"at_us": NOW_US - (n - i) * 2 * SECOND, "cpu_percent": cpu(i), "temperature_c": 50 + i % 5,
             "spool_segments": spool(i),
             "cameras": {"cam0": {"fps": 15.0 - (i % 3) * 0.1, "bitrate_bps": 1_400_000 + i * 1000,
                                  "frames_dropped": 0},
                         "cam1": {"fps": 14.0 + (i % 2), "bitrate_bps": 900_000, "frames_dropped": drops(i)}}}
            for i in range(n)]


def _camera(fps: float, dropped: int, state: str = "up") -> dict[str, Any]:
    return {"state": state, "error": None, "source": "synthetic", "width": 1280, "height": 720,
            "configured_fps": 15, "fps": fps, "bitrate_bps": 1_450_000, "frames_encoded": 9000,
            "frames_dropped": dropped, "encoder": "libx264", "subscribers": 1}


SETTINGS = {
    "cam0": {"recording_mode": "continuous", "motion_sensitivity": 0.5, "retention_days": None},
    "cam1": {"recording_mode": "objects", "motion_sensitivity": 0.7, "retention_days": 14,
             "objects": ["person", "car"], "min_score": 0.6, "threshold": 0.8},
    "cam2": {"recording_mode": "continuous", "motion_sensitivity": 0.5, "retention_days": None},
}

DETECTOR: dict[str, Any] = {
    "mode": "local", "state": "running", "device": "cpu", "provider": "CPUExecutionProvider",
    "model": "person-ssdlite.onnx", "workers": 0, "inference_ms_p50": 8.9, "inference_ms_p99": 14.2, "queue": 1,
    "queue_limit": 8, "frames": 12034, "dropped": 3, "errors": 0, "restarts": 0, "labelled": 17, "last_error": None,
    "cameras": {"cam0": {"active": True, "frames": 9000, "dropped": 3, "labelled": 12, "stream": "sub"}},
}

FLEET: dict[str, Any] = {
    "now_us": NOW_US,
    "nodes": [
        {"node": "node0", "state": "up", "url": "http://127.0.0.1:9", "cameras": ["cam0", "cam1"],
         "last_seen_us": NOW_US - SECOND, "state_changed_us": NOW_US - 600 * SECOND,
         "health": {"node": "node0", "cpu_percent": 47.0, "temperature_c": 54.2,
                    "cameras": {"cam0": _camera(14.9, 0), "cam1": _camera(14.6, 12)},
                    "spool": {"segments": 4, "bytes": 6_000_000, "limit_bytes": 1_000_000_000,
                              "oldest_start_us": NOW_US - 42 * SECOND},
                    "store": {"link": "connected"}},
         "history": _history(60, lambda i: 30 + (i * 7) % 40, lambda i: i // 10, lambda i: i // 15)},
        {"node": "node1", "state": "down", "url": "http://127.0.0.1:9", "cameras": ["cam2"],
         "last_seen_us": NOW_US - 300 * SECOND, "state_changed_us": NOW_US - 290 * SECOND,
         "health": {"node": "node1", "cpu_percent": 12.0, "temperature_c": None,
                    "gpu": {"percent": 20.0, "temperature_c": 51.0},
                    "cameras": {"cam2": _camera(15.0, 0)}, "spool": {"segments": 0, "oldest_start_us": None}},
         "history": []},
    ],
    "cameras": {cam: {"node": "node1" if cam == "cam2" else "node0", "state": "up", "settings": s}
                for cam, s in SETTINGS.items()},
    "detector": DETECTOR,
}

EVENTS = [
    {"id": 7, "camera": "cam0", "node": "node0", "start_us": NOW_US - 40 * MINUTE, "end_us": NOW_US - 40 * MINUTE
     + 12 * SECOND, "kind": "motion", "score": 0.91, "bbox": [0.1, 0.2, 0.3, 0.4], "thumb_us": None,
     "locked": True, "open": False, "label": "person", "label_score": 0.86, "label_box": [0.33, 0.33, 0.17, 0.34],
     "labels": {"person": 2, "car": 1}, "snapshot": True},
    {"id": 9, "camera": "cam1", "node": "node0", "start_us": NOW_US - 12 * MINUTE, "end_us": NOW_US - 12 * MINUTE
     + 5 * SECOND, "kind": "motion", "score": 0.42, "bbox": None, "thumb_us": None, "locked": False,
     "open": False, "label": None, "label_score": None, "label_box": None, "labels": {}, "snapshot": False},
    {"id": 11, "camera": "cam0", "node": "node0", "start_us": NOW_US - 20 * SECOND, "end_us": NOW_US - 2 * SECOND,
     "kind": "motion", "score": 0.55, "bbox": [0.5, 0.5, 0.2, 0.2], "thumb_us": None, "locked": False,
     "open": True, "label": None, "label_score": None, "label_box": None, "labels": None, "snapshot": False},
]

TIMELINES = {
    "cam0": [[NOW_US - 60 * MINUTE, NOW_US - 35 * MINUTE], [NOW_US - 30 * MINUTE, NOW_US]],
    "cam1": [[NOW_US - 50 * MINUTE, NOW_US - 5 * MINUTE]],
    "cam2": [[NOW_US - 60 * MINUTE, NOW_US - 5 * MINUTE]],
}

SEGMENTS = [{"id": 100 + i, "camera": "cam0", "node": "node0", "start_us": NOW_US - (10 - i) * 10 * SECOND,
             "end_us": NOW_US - (9 - i) * 10 * SECOND, "frames": 150, "bytes": 1_843_210 + i, "sha256": "0" * 64}
            for i in range(6)]

HISTORY = [
    {"camera": "cam1", "key": "retention_days", "old": None, "new": 14, "changed_us": NOW_US - 3600 * SECOND,
     "changed_by": "console:ops"},
    {"camera": "cam1", "key": "recording_mode", "old": "continuous", "new": "motion",
     "changed_us": NOW_US - 7200 * SECOND, "changed_by": "cli"},
]

HOOK_HA, HOOK_SHOP = "webhook:3f2a9c0d11e4b7a2", "webhook:b71c04e5a9d2f318"


def _note(target: str, state: str, ago_s: float, event_id: int, kind: str, camera: str, label: str | None,
          attempts: int = 1, error: str | None = None) -> dict[str, Any]:
    at_us = NOW_US - int(ago_s * SECOND)
    return {"target": target, "state": state, "at_us": at_us, "put_us": at_us - 40_000, "attempts": attempts,
            "event_id": event_id, "type": kind, "camera": camera, "label": label, "alert": True, "error": error,
            "due_us": NOW_US + 30 * SECOND if state == "retrying" else None, "count": 1, "what": None}


def _target(target: str, name: str, **counts: Any) -> dict[str, Any]:
    return {"target": target, "kind": target.split(":")[0], "name": name, "configured": True, "queued": 0,
            "published": 0, "delivered": 0, "retried": 0, "dropped": 0, "failed": 0, "last_error": None,
            "last_error_us": None, **counts}


REFUSED = "webhook http://shop.example:8080/… refused event 41: HTTP 410"
NOTIFICATIONS: dict[str, Any] = {
    "kept": 200,
    "targets": [
        _target("mqtt", "mqtt://ha@192.168.1.20:1883/sht", published=61, delivered=61),
        _target(HOOK_HA, "http://homeassistant.local:8123/…", queued=2, published=20, delivered=18, retried=3,
                last_error="no answer within 10 s", last_error_us=NOW_US - 4 * SECOND),
        _target(HOOK_SHOP, "http://shop.example:8080/…", published=7, delivered=6, failed=1, last_error=REFUSED,
                last_error_us=NOW_US - 9 * MINUTE),
    ],
    "items": [
        _note(HOOK_HA, "queued", 3, 44, "end", "cam0", "person", attempts=0),
        _note(HOOK_HA, "retrying", 4, 44, "new", "cam0", "person", attempts=3, error="no answer within 10 s"),
        _note("mqtt", "sent", 20, 44, "end", "cam0", "person"),
        _note("mqtt", "sent", 62, 44, "new", "cam0", "person"),
        _note("mqtt", "sent", 7 * 60, 43, "end", "cam1", "car"),
        _note(HOOK_SHOP, "sent", 7 * 60, 43, "end", "cam1", "car", attempts=2, error="HTTP 503"),
        _note(HOOK_SHOP, "failed", 9 * 60, 41, "new", "cam2", None, error=REFUSED),
        _note(HOOK_HA, "sent", 9 * 60, 41, "new", "cam2", None),
    ],
}


class CannedStore(StoreLink):
    """A ``StoreLink`` that is connected at once, sends one fleet, and answers from the tables above."""

    def __init__(self, fleet: dict[str, Any] | None = None, events: list[dict[str, Any]] | None = None) -> None:
        super().__init__("http://127.0.0.1:8100")
        self.fleet = fleet or FLEET
        self.events = EVENTS if events is None else events  # a test may change them between calls
        self.thumbnail = jpeg(gradient(320, 240))
        self.snapshot = jpeg(boxed(gradient(320, 240), tuple(EVENTS[0]["label_box"])))  # type: ignore[arg-type]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def connected(self) -> bool:
        return True

    async def run(self, post: Post) -> None:
        post(StoreConnected(self.url))
        post(FleetUpdated(FleetReport.from_json(self.fleet)))
        await asyncio.Event().wait()

    async def call(self, method: str, *, on_chunk: Callable[[bytes], object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None, **params: Any) -> Any:
        self.calls.append((method, params))
        if method == "events":
            wanted = set(params.get("labels") or ())
            return {"items": [e for e in self.events if not wanted or wanted & set(e["labels"] or {})], "next": None}
        if method == "segments":
            return {"items": SEGMENTS, "next": None}
        if method == "timeline":
            return {"camera": params["camera"], "from_us": params["from_us"], "to_us": params["to_us"],
                    "bucket": params["bucket"], "intervals": TIMELINES[params["camera"]], "gaps": [], "buckets": [],
                    "recorded_us": sum(e - s for s, e in TIMELINES[params["camera"]])}
        if method == "thumbnail":
            assert on_chunk is not None
            on_chunk(self.thumbnail)
            return {"content_type": "image/jpeg", "frame_us": params["at_us"], "width": 320, "height": 240,
                    "bytes": len(self.thumbnail)}
        if method == "snapshot":
            event = next((e for e in self.events if e["id"] == params["event"]), None)
            if event is None or not event["snapshot"]:
                raise StoreError("not-found", f"event {params['event']} has no snapshot: no label yet")
            assert on_chunk is not None
            on_chunk(self.snapshot)
            return {"content_type": "image/jpeg", "frame_us": event["start_us"] + 3 * SECOND, "width": 320,
                    "height": 240, "bytes": len(self.snapshot)}
        if method == "settings":
            return {"settings": SETTINGS, "descriptions": {k: s.description for k, s in SETTING_SPECS.items()}}
        if method == "settings_history":
            return {"items": HISTORY}
        if method == "notifications":
            target = params.get("target")
            return {**NOTIFICATIONS, "items": [n for n in NOTIFICATIONS["items"] if target in (None, n["target"])]}
        raise AssertionError(f"no canned answer for {method}")
