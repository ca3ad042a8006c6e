"""Prometheus exposition shared by the node, the store and the relay (``GET /metrics``).

Each server owns one ``CollectorRegistry`` (never the global default one, so
two servers in one test process do not mix). Counters and gauges are custom
collectors that read the stats objects the services keep anyway, at scrape
time; only latency histograms are observed on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

# The classic text format: every Prometheus 2.x (Debian's included) reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: encode and ingest are ms-scale; queries reach seconds (exports, thumbnails).
FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
SLOW_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Family = GaugeMetricFamily | CounterMetricFamily


class FunctionCollector(Collector):
    """A collector whose families come from a function called at each scrape."""

    def __init__(self, collect: Callable[[], Iterable[Family]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Family]:
        return list(self._collect())


def new_registry(collect: Callable[[], Iterable[Family]] | None = None) -> CollectorRegistry:
    """A registry with the process's CPU and memory, plus the service's own families."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    if collect is not None:
        registry.register(FunctionCollector(collect))
    return registry


def histogram(registry: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...] = (),
              buckets: tuple[float, ...] = FAST_BUCKETS) -> Histogram:
    return Histogram(name, doc, labels, registry=registry, buckets=buckets)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    """``name`` without ``_total``: the family adds it to the sample."""
    return CounterMetricFamily(name, doc, labels=list(labels))


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def metrics_response(connection: ServerConnection, registry: CollectorRegistry) -> Response:
    """``GET /metrics`` from a websockets ``process_request`` hook."""
    response = connection.respond(HTTPStatus.OK, exposition(registry).decode())
    del response.headers["Content-Type"]  # websockets' Headers appends on assignment
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
