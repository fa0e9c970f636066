"""Prometheus metrics of one Flask service, on a registry the caller owns.

Reads no environment variables. The names are the ones the course's PromQL uses, so
they are part of the public contract. Seed 000: flask_requests_total,
flask_errors_total, flask_error_rate, flask_uptime_seconds,
flask_request_duration_seconds. Seed 002 (its app.py, whose names its Grafana step
queries): http_requests_total, request_duration_seconds, active_users and
request_latency_seconds, so that all four metric types appear. The two seeds' request
counters and histograms count the same requests with the same bounded labels.

Single-process by design: gunicorn runs one worker with threads (see gunicorn_conf),
because prometheus_client's multiprocess mode drops exemplars and cannot serve live
gauges or summaries. Scale out with more replicas, each scraped on its own.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
)

# From 1 ms (a cache hit) to 10 s (past the frontend's read timeout), roughly x2.5 per
# step, so histogram_quantile() stays accurate to within one bucket across that range.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Methods outside this set collapse into "other": a client sending random verbs must
# not be able to create unbounded label values.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Label value for requests that matched no route: one value for all of them, so that a
# scan of random URLs cannot blow up the series count.
UNMATCHED_ENDPOINT = "unmatched"


class Metrics:
    """All metrics of one service. Safe to use from many threads."""

    def __init__(self, registry: CollectorRegistry, clock=time.monotonic) -> None:
        self.registry = registry
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._requests = 0
        self._errors = 0
        # (endpoint, method, status) -> the labelled children, so that a request costs
        # one dict lookup instead of two labels() calls (each a lock and a tuple build).
        # Bounded: endpoints are route templates, methods a closed set, statuses few.
        self._children: dict[tuple[str, str, int], tuple] = {}

        # Process, platform and GC collectors come first so that a fresh registry is
        # as informative as the global default one would have been.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        self.requests_total = Counter(
            "flask_requests",
            "HTTP requests handled, by route template, method and status code.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.errors_total = Counter(
            "flask_errors",
            "Application errors, by error type (health_check_failed, database_error, ...).",
            ["error_type"],
            registry=registry,
        )
        self.error_rate = Gauge(
            "flask_error_rate",
            "Errors as a percentage of requests since the process started.",
            registry=registry,
        )
        self.error_rate.set_function(self._error_rate_percent)
        self.uptime = Gauge(
            "flask_uptime_seconds",
            "Seconds since the service started; it drops to 0 on a restart.",
            registry=registry,
        )
        self.uptime.set_function(self.uptime_seconds)
        self.request_duration = Histogram(
            "flask_request_duration_seconds",
            "Time to handle a request, by route template and method.",
            ["endpoint", "method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.http_requests_total = Counter(
            "http_requests",
            "HTTP requests handled (seed 002's name for flask_requests_total).",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.seed_request_duration = Histogram(
            "request_duration_seconds",
            "Time to handle a request (seed 002's name for flask_request_duration_seconds).",
            ["endpoint", "method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.active_users = Gauge(
            "active_users",
            "Requests being served right now (the course's 'active users').",
            registry=registry,
        )
        self.request_latency = Summary(
            "request_latency_seconds",
            "Request latency as a summary (count and sum), next to the histogram.",
            registry=registry,
        )

    def uptime_seconds(self) -> float:
        return self._clock() - self._started

    def _error_rate_percent(self) -> float:
        with self._lock:
            requests, errors = self._requests, self._errors
        return 100.0 * errors / requests if requests else 0.0

    def totals(self) -> tuple[int, int]:
        """(requests, errors) since start, as /stats reports them."""
        with self._lock:
            return self._requests, self._errors

    def observe_request(
        self,
        endpoint: str,
        method: str,
        status: int,
        duration: float,
        trace_id: str | None,
    ) -> None:
        method = method if method in KNOWN_METHODS else "other"
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests_total.labels(endpoint, method, str(status)),
                self.request_duration.labels(endpoint, method),
                self.http_requests_total.labels(endpoint, method, str(status)),
                self.seed_request_duration.labels(endpoint, method),
            )
            self._children[key] = children
        children[0].inc()
        children[2].inc()
        exemplar = {"trace_id": trace_id} if trace_id else None
        children[1].observe(duration, exemplar)
        children[3].observe(duration, exemplar)
        self.request_latency.observe(duration)
        with self._lock:
            self._requests += 1

    def observe_error(self, error_type: str) -> None:
        self.errors_total.labels(error_type).inc()
        with self._lock:
            self._errors += 1
