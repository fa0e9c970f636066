"""client_spans records, call for call, the spans opentelemetry-instrumentation-httpx
records: same scope, name, kind, attributes, status, exception event and parent, and
the same traceparent on the wire."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obs_telemetry import client_spans

CALLS = [
    ("GET", "http://backend:5001/api/items/2"),
    ("GET", "http://backend:5001/api/items/99"),
    ("GET", "http://backend:5001/error?type=database_error"),
    ("POST", "http://backend:5001/api/orders"),
    ("BREW", "http://backend:5001/"),
    ("GET", "http://user:secret@backend:5001/x?sig=abc&Signature=s&keep=1"),
    ("GET", "http://backend:5001/redirect"),
    ("GET", "http://backend:5001/unreachable"),
]


def handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/unreachable":
        raise httpx.ConnectError("connection refused", request=request)
    status = {"/api/items/99": 404, "/error": 500, "/redirect": 302, "/api/orders": 201}.get(
        path, 200
    )
    # Echo the propagated trace context so the test can compare what went on the wire.
    return httpx.Response(status, json={"traceparent": request.headers.get("traceparent")})


def normalized(span) -> tuple:
    events = tuple(
        (
            e.name,
            tuple(sorted((k, v) for k, v in e.attributes.items() if k != "exception.stacktrace")),
        )
        for e in span.events
    )
    scope = span.instrumentation_scope
    return (
        span.name,
        span.kind,
        (scope.name, scope.version, scope.schema_url),
        tuple(sorted(span.attributes.items())),
        (span.status.status_code, span.status.description),
        events,
        span.parent is not None,
    )


def run(mode: str, calls=CALLS):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = httpx.Client(transport=httpx.MockTransport(handler))
    if mode == "lean":
        client_spans.instrument(client, provider)
    else:
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=provider, meter_provider=NoOpMeterProvider()
        )
    echoed = []
    with provider.get_tracer("test").start_as_current_span("server") as server:
        parent = server.get_span_context()
        for method, url in calls:
            try:
                response = client.request(method, url, content=b"{}" if method == "POST" else None)
                echoed.append(response.json()["traceparent"])
            except httpx.ConnectError:
                echoed.append("connect error")
            # The client span is no longer current once the call returns or fails.
            assert trace.get_current_span() is server
    client.close()
    spans = [s for s in exporter.get_finished_spans() if s.name != "server"]
    provider.shutdown()
    # The traceparent sent is the client span's own context under the server's trace.
    for span, sent in zip(spans, echoed, strict=True):
        if sent != "connect error":
            ctx = span.context
            assert sent == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        assert span.parent.span_id == parent.span_id
    return [normalized(s) for s in spans]


def test_client_spans_match_the_upstream_instrumentation():
    lean, upstream = run("lean"), run("upstream")
    assert len(upstream) == len(CALLS)
    assert lean == upstream


def test_repeated_calls_reuse_the_redacted_url_and_still_match():
    lean, upstream = run("lean", CALLS * 2), run("upstream", CALLS * 2)
    assert lean == upstream
    assert lean[: len(CALLS)] == lean[len(CALLS) :]


def test_the_comparison_notices_a_difference(monkeypatch):
    upstream = run("upstream")
    monkeypatch.setattr(client_spans, "redact_url", lambda url: url)
    assert run("lean") != upstream


@pytest.mark.parametrize(
    "variable",
    ["OTEL_PYTHON_HTTPX_EXCLUDED_URLS", "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"],
)
def test_options_only_upstream_implements_hand_the_client_to_it(monkeypatch, variable):
    monkeypatch.setenv(variable, "x")
    assert not client_spans.lean_possible()
    client = httpx.Client(transport=httpx.MockTransport(handler))
    client_spans.instrument(client, TracerProvider())
    assert not isinstance(client._transport, client_spans.TracedTransport)
    client.close()
