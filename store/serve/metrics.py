"""The store's ``GET /metrics``: ingest, queries, retention, the fleet and the relay.

Counters and gauges are read at scrape time from what the store keeps anyway
(``IngestStats``, ``Fleet``, ``RetentionTask``, the relay's upstreams); only
the ingest and query latency histograms are observed as requests are served.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any

from shared.metrics import SLOW_BUCKETS, Family, counter, gauge, histogram, new_registry
from store.maintenance.retention import RetentionTask

if TYPE_CHECKING:
    from store.live.relay import Relay
    from store.serve.server import StoreServer


class StoreMetrics:
    def __init__(self, server: StoreServer) -> None:
        self.server = server
        self.registry = new_registry(self._collect)
        self.ingest_seconds = histogram(self.registry, "sht_ingest_seconds",
                                        "Time from a segment's arrival to its ack or refusal (hash, checks, "
                                        "durable write, index commit)")
        self.query_seconds = histogram(self.registry, "sht_query_seconds", "Time to answer one /api request",
                                       ("method",), buckets=SLOW_BUCKETS)
        self.detect_seconds = histogram(self.registry, "sht_detect_inference_seconds",
                                        "Time the object detector took for one frame (the round trip to a worker "
                                        "for ``sht detect`` workers)", ("camera", "device"))

    async def timed_query(self, method: str, work: Awaitable[Any]) -> None:
        started = time.perf_counter()
        try:
            await work
        finally:
            self.query_seconds.labels(method).observe(time.perf_counter() - started)

    def _collect(self) -> Iterator[Family]:
        server = self.server
        stats = server.ingestor.stats
        segments = counter("sht_ingest_segments", "Segments received, by outcome", ("result",))
        segments.add_metric(["stored"], stats.stored)
        segments.add_metric(["duplicate"], stats.duplicates)
        segments.add_metric(["refused"], stats.refused)
        yield segments
        stored = counter("sht_ingest_bytes", "Segment bytes stored since the store started")
        stored.add_metric([], stats.bytes_stored)
        yield stored

        retention = server.ingestor.hooks
        if isinstance(retention, RetentionTask):
            deleted = counter("sht_retention_deleted_segments", "Segments deleted by retention, by reason",
                              ("reason",))
            for reason, count in sorted(retention.deleted_total.items()):
                deleted.add_metric([reason], count)
            yield deleted
            freed = counter("sht_retention_freed_bytes", "Bytes freed by retention")
            freed.add_metric([], retention.freed_bytes_total)
            yield freed
            collected = counter("sht_retention_deleted_files", "Segment files the collector deleted after their rows")
            collected.add_metric([], retention.collected_files_total)
            yield collected
            usage_bytes = gauge("sht_store_footage_bytes", "Bytes of footage in the index")
            usage_bytes.add_metric([], retention.usage.total_bytes)
            usage_segments = gauge("sht_store_segments", "Segments in the index")
            usage_segments.add_metric([], retention.usage.segments)
            yield from (usage_bytes, usage_segments)

        up = gauge("sht_node_up", "1 while a node's control link is up and heartbeating, else 0", ("node",))
        seen = gauge("sht_node_last_seen_timestamp_seconds", "When the store last heard from a node", ("node",))
        cameras = gauge("sht_node_cameras", "Cameras a node announced", ("node",))
        for name, state in sorted(server.fleet.nodes.items()):
            up.add_metric([name], 1.0 if state.state == "up" else 0.0)
            cameras.add_metric([name], len(state.cameras))
            if state.last_seen_us is not None:
                seen.add_metric([name], state.last_seen_us / 1e6)
        yield from (up, seen, cameras)
        relay = getattr(server, "relay", None)
        if relay is not None:
            yield from relay_families(relay)
        detection = getattr(server, "detection", None)
        if detection is not None:
            yield from detection.metric_families()
        replica = getattr(server, "replica", None)
        if replica is not None:
            yield from replica.metric_families()
        notify = getattr(server, "notify", None)
        if notify is not None:
            yield from notify.metric_families()


def relay_families(relay: Relay) -> Iterator[Family]:
    """The relay's viewers and upstreams (also served by a relay-only process)."""
    labels = ("camera", "stream")  # stream: main or sub (one upstream each)
    viewers = gauge("sht_relay_viewers", "Viewers watching a camera's stream through this relay", labels)
    upstream = gauge("sht_relay_upstream_up", "1 while the relay receives the stream from its node", labels)
    frames = counter("sht_relay_frames", "Access units received from nodes", labels)
    reconnects = counter("sht_relay_upstream_connects", "Upstream connections opened to nodes", labels)
    for (camera, stream), up in sorted(relay.upstreams.items()):
        viewers.add_metric([camera, stream], up.viewers)
        upstream.add_metric([camera, stream], 1.0 if up.streaming else 0.0)
        frames.add_metric([camera, stream], up.frames)
        reconnects.add_metric([camera, stream], up.connects)
    yield from (viewers, upstream, frames, reconnects)
