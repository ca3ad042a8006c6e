"""The node's ``GET /metrics``: cameras, viewers, spool and upload, read from the node's own stats at scrape time.

Only the encode-time histogram is observed as frames are encoded (from each
camera's capture thread; prometheus-client histograms are thread-safe).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from shared.metrics import Family, counter, exposition, gauge, histogram, new_registry

if TYPE_CHECKING:
    from node.app import Node


def is_viewer(name: str) -> bool:
    return name.startswith("viewer")  # node/serve/server.py names live viewers' subscriptions "viewer <peer>"


class NodeMetrics:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = new_registry(self._collect)
        self.encode_seconds = histogram(self.registry, "sht_camera_encode_seconds",
                                        "Time to encode one frame (libx264), per camera", ("camera",))
        for camera in node.master.cameras.values():
            camera.on_encode_time = self.encode_seconds.labels(camera.id).observe

    def exposition(self) -> bytes:
        return exposition(self.registry)

    def _collect(self) -> Iterator[Family]:
        node = self.node
        frames = counter("sht_camera_frames_encoded", "Frames encoded since the node started", ("camera",))
        dropped = counter("sht_camera_frames_dropped", "Frame slots skipped because capture fell behind",
                          ("camera",))
        encoded = counter("sht_camera_encoded_bytes", "H.264 bytes produced", ("camera",))
        keyframes = counter("sht_camera_keyframes", "Keyframes produced", ("camera",))
        fps = gauge("sht_camera_fps", "Frames per second over the last few seconds", ("camera",))
        bitrate = gauge("sht_camera_bitrate_bytes_per_second", "H.264 bitrate over the last few seconds (bytes, "
                        "Prometheus' base unit: x8 for bits)", ("camera",))
        up = gauge("sht_camera_up", "1 while the camera captures, else 0 (stalled, down, stopped)", ("camera",))
        stalled = gauge("sht_camera_stalled", "1 while the camera's source is stalled and being reopened",
                        ("camera",))
        stalls = counter("sht_camera_stalls", "Times the camera stopped delivering frames (a stall)", ("camera",))
        viewers = gauge("sht_camera_viewers", "Live viewers connected to this node", ("camera",))
        last = gauge("sht_camera_last_capture_timestamp_seconds", "Capture time of the newest frame", ("camera",))
        for cam in node.master.cameras.values():
            s = cam.stats
            rate_fps, rate_bps = s.rates()
            frames.add_metric([cam.id], s.frames_encoded)
            dropped.add_metric([cam.id], s.frames_dropped)
            encoded.add_metric([cam.id], s.bytes_encoded)
            keyframes.add_metric([cam.id], s.keyframes)
            fps.add_metric([cam.id], rate_fps)
            bitrate.add_metric([cam.id], rate_bps / 8)
            up.add_metric([cam.id], 1.0 if cam.state == "up" else 0.0)
            stalled.add_metric([cam.id], 1.0 if cam.state == "stalled" else 0.0)
            stalls.add_metric([cam.id], cam.stalls)
            viewers.add_metric([cam.id], sum(is_viewer(sub.name) for sub in cam.fanout.subscriptions))
            last.add_metric([cam.id], s.last_capture_us / 1e6)
        yield from (frames, dropped, encoded, keyframes, fps, bitrate, up, stalled, stalls, viewers, last)

        backlog = node.uploader.backlog()
        yield _gauge("sht_spool_bytes", "Bytes waiting in the spool for the store", backlog.bytes or 0)
        yield _gauge("sht_spool_limit_bytes", "The spool's size limit", backlog.limit_bytes or 0)
        yield _gauge("sht_spool_segments", "Segments waiting in the spool", backlog.segments or 0)
        yield _gauge("sht_spool_oldest_age_seconds", "Upload lag: age of the oldest segment not yet acknowledged "
                     "by the store (0 when the spool is empty)", backlog.oldest_age_s or 0.0)
        lost = counter("sht_spool_lost_segments", "Segments dropped unsent (spool full) or never spooled",
                       ("camera",))
        for camera, count in sorted(node.uploader.lost_segments.items()):
            lost.add_metric([camera], count)
        yield lost
        uploaded = counter("sht_upload_items", "Items sent to the store, by outcome", ("result",))
        uploaded.add_metric(["acknowledged"], node.uploader.uploaded)
        uploaded.add_metric(["refused"], node.uploader.rejected)
        yield uploaded
        yield _gauge("sht_store_link_up", "1 while the upload link to the store is connected",
                     1.0 if node.uploader.link == "connected" else 0.0)


def _gauge(name: str, doc: str, value: float) -> Family:
    family = gauge(name, doc)
    family.add_metric([], value)
    return family
