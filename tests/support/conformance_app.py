"""A small Flask app instrumented by obs_telemetry, for the conformance suite.

Reads no environment variables itself; the OpenTelemetry instrumentations it loads read
theirs (OTEL_SEMCONV_STABILITY_OPT_IN, OTEL_PYTHON_FLASK_EXCLUDED_URLS,
OTEL_PYTHON_EXCLUDED_URLS, OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*). Several of
those are read once per process, at import or first use, as upstream documents: the
tests that vary them run this module in a fresh interpreter,

    python -m tests.support.conformance_app '[["GET", "/items/1", {}]]'

which answers the requests through Flask's test client and prints the finished spans as
one JSON line (see span_record).
"""

from __future__ import annotations

import contextvars
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from flask import Flask, abort, copy_current_request_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from obs_telemetry import AppError, Telemetry, instrument_http_client

# The routes' own knowledge of what happened, for assertions the spans cannot carry.
OBSERVED: dict[str, object] = {}
DOWNSTREAM = "http://downstream.test"


def downstream(request: httpx.Request) -> httpx.Response:
    """The other end of /call's client calls: echoes the traceparent it received."""
    OBSERVED.setdefault("downstream_traceparents", []).append(request.headers.get("traceparent"))
    if request.url.path == "/missing":
        return httpx.Response(404, json={"error": "not_found"})
    if request.url.path == "/broken":
        return httpx.Response(502, json={"error": "upstream_error"})
    return httpx.Response(200, json={"ok": True})


def create_app(tracer_provider, *, instrument_client_twice: bool = False) -> Flask:
    app = Flask("conformance")
    app.config.update(
        TESTING=True,
        SERVICE_NAME="conformance",
        SERVICE_VERSION="0.0.1",
        # The test process's logging stays untouched; stdout carries only the JSON.
        TELEMETRY_CONFIGURE_LOGGING=False,
    )
    Telemetry(app, registry=CollectorRegistry(), tracer_provider=tracer_provider)
    client = instrument_http_client(
        httpx.Client(transport=httpx.MockTransport(downstream), base_url=DOWNSTREAM), app
    )
    if instrument_client_twice:
        instrument_http_client(client, app)
    app.extensions["downstream_client"] = client

    @app.get("/items/<int:item_id>")
    def item(item_id: int):
        if item_id == 404:
            raise AppError("not_found", f"no item {item_id}", 404)
        return {"id": item_id}

    @app.get("/invalid")
    def invalid():
        raise AppError("validation_error", "bad input", 400)

    @app.get("/fail")
    def fail():
        raise AppError("database_error", "connection refused", 500)

    @app.get("/unavailable")
    def unavailable():
        abort(503)

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.get("/metrics")
    def metrics():
        return "scrape\n"

    @app.get("/livez")
    def livez():
        return "ok\n"

    @app.get("/reports/metrics")
    def reports_metrics():
        return {"ok": True}

    @app.get("/huge")
    def huge():
        span = trace.get_current_span()
        span.set_attribute("test.int64_overflow", 2**63 + 5)
        span.set_attribute("test.int_70_bits", 2**70)
        span.set_attribute("test.fine", 7)
        return {"ok": True}

    @app.get("/call")
    def call():
        statuses = [client.get(path).status_code for path in ("/ok", "/missing", "/broken")]
        return {"statuses": statuses}

    # One long-lived worker thread, as a pool would have: what a request leaves on it
    # would show in the next task it runs.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conformance-worker")
    app.extensions["worker"] = worker

    @app.get("/copied-context")
    def copied_context():
        @copy_current_request_context
        def work():
            return trace.get_current_span().get_span_context().span_id

        OBSERVED["view_span"] = trace.get_current_span().get_span_context().span_id
        OBSERVED["worker_saw"] = worker.submit(work).result()
        # After the copied context is gone, the worker thread must hold no span.
        OBSERVED["worker_after"] = worker.submit(current_span_id).result()
        OBSERVED["view_done_ns"] = time.time_ns()
        return {"ok": True}

    @app.get("/spawn")
    def spawn():
        # The OpenTelemetry way to carry the current span into a thread: its context.
        ctx = contextvars.copy_context()
        thread = threading.Thread(target=ctx.run, args=(child_span, tracer_provider))
        thread.start()
        thread.join()
        return {"ok": True}

    return app


def close(app: Flask) -> None:
    app.extensions["downstream_client"].close()
    app.extensions["worker"].shutdown()


def current_span_id() -> int:
    return trace.get_current_span().get_span_context().span_id


def child_span(tracer_provider) -> None:
    with tracer_provider.get_tracer("conformance").start_as_current_span("child work"):
        pass


def span_record(span) -> dict:
    """What the suite asserts on, in plain JSON types."""
    parent = span.parent
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent": None
        if parent is None
        else {"span_id": format(parent.span_id, "016x"), "remote": parent.is_remote},
        "attributes": {
            k: list(v) if isinstance(v, tuple) else v for k, v in span.attributes.items()
        },
        "status": span.status.status_code.name,
        "description": span.status.description,
        "events": [[e.name, dict(e.attributes)] for e in span.events],
        "scope": [scope.name, scope.version, scope.schema_url],
    }


def run(requests: list) -> list[dict]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(provider)
    test_client = app.test_client()
    for method, path, headers in requests:
        test_client.open(path, method=method, headers=headers)
    close(app)
    return [span_record(span) for span in exporter.get_finished_spans()]


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
