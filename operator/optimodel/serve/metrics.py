"""Prometheus metrics of the server. Serve layer, metrics; imports prometheus_client and the stdlib.

A registry of its own per server (not the process-global one) so tests and several apps in one
process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Inference times of the serving model and a shadow candidate, from 50 us up: a tiny model answers in
# a tenth of a millisecond, and the p95 ratio of the analysis is read from these buckets.
SHADOW_BUCKETS = tuple(round(0.00005 * 1.25**k, 7) for k in range(45))
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "optimodel_requests",
            "Inference and metadata requests answered, by protocol, route and status code.",
            ["protocol", "route", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "optimodel_request_errors",
            "Requests answered with a 4xx or 5xx, by protocol and status code (health probes excluded).",
            ["protocol", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "optimodel_request_duration_seconds",
            "Time from request received to response ready.",
            ["protocol", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "optimodel_batch_size",
            "Rows per interpreter call (instances of one request, or a dynamic batch).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "optimodel_requests_in_flight", "Requests being handled.", registry=self.registry
        )
        self.worker = Gauge(
            "optimodel_worker",
            "1, labelled with the index of the server process that answered the scrape (--workers).",
            ["worker"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "optimodel_model_ready",
            "1 when the model is loaded, verified and warmed up.",
            registry=self.registry,
        )

        self._shadow()

    def _shadow(self) -> None:
        """The figures of a shadow analysis (`mirror`), labelled with the candidate's sha256."""
        candidate = ["candidate"]
        self.shadow_requests = Counter(
            "optimodel_shadow_requests", "Mirrored requests the candidate answered usably.",
            candidate, registry=self.registry)
        self.shadow_errors = Counter(
            "optimodel_shadow_errors",
            "Mirrored requests the candidate failed: error status, timeout, unusable answer.",
            candidate, registry=self.registry)
        self.shadow_compared = Counter(
            "optimodel_shadow_compared",
            "Rows (classes) or output values (values) compared between the two models.",
            candidate, registry=self.registry)
        self.shadow_agreeing = Counter(
            "optimodel_shadow_agreeing", "Compared rows whose top-1 class is the same for both models.",
            candidate, registry=self.registry)
        self.shadow_difference = Counter(
            "optimodel_shadow_absolute_difference", "Sum of |serving - candidate| over compared values.",
            candidate, registry=self.registry)
        self.shadow_serving_seconds = Histogram(
            "optimodel_shadow_serving_inference_seconds",
            "Inference time of the serving model on the requests that were mirrored.",
            candidate, buckets=SHADOW_BUCKETS, registry=self.registry)
        self.shadow_candidate_seconds = Histogram(
            "optimodel_shadow_candidate_inference_seconds",
            "Inference time the candidate reported for the mirrored requests.",
            candidate, buckets=SHADOW_BUCKETS, registry=self.registry)
        self.shadow_dropped = Counter(
            "optimodel_shadow_dropped", "Requests not mirrored because the mirror's queue was full.",
            registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
