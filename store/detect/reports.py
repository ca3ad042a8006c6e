"""What the store's object detection reports: its /health (``detect``, also the ``fleet`` result's
``detector``) and its /metrics families."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from shared.metrics import Family, counter, gauge
from shared.protocol.detector_health import CameraDetection, DetectorHealth
from store.detect.scheduler import QUEUE_PER_CAMERA, FrameScheduler


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2) if ordered else None


def detector_health(scheduler: FrameScheduler, enabled: bool, active: Mapping[str, bool],
                    labelled: Mapping[str, int], streams: Mapping[str, str | None],
                    last_error: str | None) -> DetectorHealth:
    backend = scheduler.backend()
    info = backend.info if backend is not None else {}
    local, remote = scheduler.local, scheduler.remote
    if not enabled:
        mode, state = "off", "off"
    elif backend is not None and backend is remote:
        mode, state = "workers", "running"
    else:
        local_state = getattr(local, "state", "ready")
        mode, state = "local", "running" if local_state == "ready" else local_state
    ms = list(scheduler.inference_ms)
    cameras = sorted(set(scheduler.cameras) | set(active))
    return DetectorHealth(
        mode=mode, state=state, device=info.get("device"), provider=info.get("provider"),
        model=Path(str(info["model"])).name if info.get("model") else None,
        workers=remote.connected if remote is not None else 0,
        inference_ms_p50=percentile(ms, 0.5), inference_ms_p99=percentile(ms, 0.99),
        queue=sum(len(c.queue) for c in scheduler.cameras.values()),
        queue_limit=QUEUE_PER_CAMERA * max(1, len(scheduler.cameras)), frames=scheduler.frames,
        local_frames=getattr(local, "frames", 0), worker_frames=remote.frames if remote is not None else 0,
        dropped=scheduler.dropped, errors=scheduler.errors, restarts=getattr(local, "restarts", 0),
        labelled=sum(labelled.values()), last_error=scheduler.last_error or last_error,
        cameras={name: CameraDetection(active=active.get(name, False), frames=scheduler.camera(name).frames,
                                       dropped=scheduler.camera(name).dropped, labelled=labelled.get(name, 0),
                                       stream=streams.get(name))
                 for name in cameras})


def metric_families(scheduler: FrameScheduler, labelled: Mapping[str, int]) -> Iterator[Family]:
    backend = scheduler.backend()
    device = str((backend.info if backend is not None else {}).get("device") or "cpu")
    frames = counter("sht_detect_frames", "Frames analysed by the object detector", ("camera", "device"))
    dropped = counter("sht_detect_dropped_frames", "Frames not analysed: the detector was busy or away",
                      ("camera", "device"))
    failed = counter("sht_detect_failed_frames", "Frames the detector failed on (crash, hang or bad frame)",
                     ("camera", "device"))
    events = counter("sht_detect_events_labelled", "Motion events that got a label", ("camera", "device"))
    for name in sorted(set(scheduler.cameras) | set(labelled)):  # every watched camera, analysed yet or not
        cam = scheduler.camera(name)
        for dev, count in sorted(cam.by_device.items()):
            frames.add_metric([name, dev], count)
        dropped.add_metric([name, device], cam.dropped)
        failed.add_metric([name, device], cam.failed)
    for name, count in sorted(labelled.items()):
        events.add_metric([name, device], count)
    yield from (frames, dropped, failed, events)
    errors = counter("sht_detect_errors", "Frames the detector failed on, all cameras")
    errors.add_metric([], scheduler.errors)
    yield errors
    queue = gauge("sht_detect_queue", "Frames waiting for the detector")
    queue.add_metric([], sum(len(c.queue) for c in scheduler.cameras.values()))
    yield queue
