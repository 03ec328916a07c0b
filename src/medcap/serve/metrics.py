"""Prometheus metrics of one service process (text format at `GET /metrics`).

Each app gets its own registry (not prometheus_client's global one), so several apps in
one process (tests) never mix their counts. Endpoints are labelled by route template
(`/v1/cases/{image_id}`), never by the raw path, so label values stay few.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"  # the endpoint label of requests no route took (404s)

# seconds; a search is a few ms, a caption with a VLM seconds
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """Request counts and latencies by endpoint, batch sizes, queue and index size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "medcap_requests", "HTTP requests answered", ["method", "endpoint", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "medcap_request_duration_seconds", "Time from request to response",
            ["method", "endpoint"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_progress = Gauge(
            "medcap_requests_in_progress", "Requests being answered", registry=r
        )
        self.batch_size = Histogram(
            "medcap_batch_size", "Queries per encoder batch", ["kind"],
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.queued = Gauge(
            "medcap_queries_queued", "Queries waiting for the encoder", ["kind"], registry=r
        )
        self.index_cases = Gauge("medcap_index_cases", "Cases in the served index", registry=r)
        self.ready = Gauge("medcap_ready", "1 once the index and encoder are loaded", registry=r)

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
