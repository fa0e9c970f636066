"""Client spans for an httpx.Client: what opentelemetry-instrumentation-httpx records,
cheaper.

Reads, once, whether OTEL_SEMCONV_STABILITY_OPT_IN selects the new HTTP conventions and
whether OTEL_PYTHON_HTTPX_EXCLUDED_URLS or the
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_* / _SANITIZE_FIELDS variables are set:
in any of those cases `instrument` hands the client to the upstream instrumentation,
which implements them. Otherwise (the default) the client's transport is wrapped by
TracedTransport, which records the upstream's span: its scope, name, kind, attributes
(http.method, http.url redacted as upstream does, http.status_code), status, exception
event and W3C traceparent injection (tests/unit/test_client_spans.py compares them).

Why: per call the upstream wrapper rebuilds the URL and the headers twice (to look for
headers to capture, even when none are configured) and fills metric attribute maps for
histograms this project does not export. Measured at about 250 us of CPU per call; this
wrapper, about a third (docs/benchmarks.md). It also keeps the redacted form of the URLs
it has called, and starts the span without start_as_current_span's two generator-based
context managers.
"""

from __future__ import annotations

import os

import httpx
from opentelemetry import context, trace
from opentelemetry.instrumentation._semconv import (
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)
from opentelemetry.instrumentation.httpx import __name__ as _UPSTREAM_SCOPE
from opentelemetry.instrumentation.httpx.version import __version__ as _UPSTREAM_VERSION
from opentelemetry.instrumentation.utils import (
    http_status_to_status_code,
    is_http_instrumentation_enabled,
)
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    redact_url,
    sanitize_method,
)

_UPSTREAM_ONLY_VARIABLES = (
    "OTEL_PYTHON_HTTPX_EXCLUDED_URLS",
    "OTEL_PYTHON_EXCLUDED_URLS",
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
)
_URL_CACHE_LIMIT = 1024


def _semconv_mode() -> _StabilityMode:
    _OpenTelemetrySemanticConventionStability._initialize()
    return _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
        _OpenTelemetryStabilitySignalType.HTTP
    )


def lean_possible() -> bool:
    """Whether TracedTransport implements every option the environment asks for."""
    return _semconv_mode() is _StabilityMode.DEFAULT and not any(
        os.environ.get(name) for name in _UPSTREAM_ONLY_VARIABLES
    )


class TracedTransport(httpx.BaseTransport):
    """Wraps a transport; each request becomes a CLIENT span, as upstream makes it."""

    def __init__(self, transport: httpx.BaseTransport, tracer_provider) -> None:
        self._transport = transport
        self._redacted_urls: dict[str, str] = {}
        self._tracer = trace.get_tracer(
            _UPSTREAM_SCOPE,
            _UPSTREAM_VERSION,
            tracer_provider,
            schema_url=_get_schema_url(_StabilityMode.DEFAULT),
        )

    def _redacted(self, url: str) -> str:
        # redact_url parses the URL twice (credentials, then query parameters): about
        # 10 us. A client calls the same few URLs over and over, so the result is kept;
        # bounded by clearing, like the server side's attribute cache.
        redacted = self._redacted_urls.get(url)
        if redacted is None:
            redacted = redact_url(url)
            if len(self._redacted_urls) >= _URL_CACHE_LIMIT:
                self._redacted_urls.clear()
            self._redacted_urls[url] = redacted
        return redacted

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not is_http_instrumentation_enabled():
            return self._transport.handle_request(request)
        method = sanitize_method(request.method.strip())
        attributes = {"http.method": method, "http.url": self._redacted(str(request.url))}
        name = "HTTP" if method == "_OTHER" else method
        # start_as_current_span's work (start_span, then use_span) without its two
        # generator-based context managers; use_span itself only on the failure path,
        # where its exception event and ERROR status are the upstream's.
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        try:
            inject(request.headers)
            exception = None
            try:
                response = self._transport.handle_request(request)
            except Exception as exc:
                exception = exc
                response = getattr(exc, "response", None)
            if isinstance(response, httpx.Response) and span.is_recording():
                code = response.status_code
                status = http_status_to_status_code(code, server_span=False)
                # Upstream sets these twice (once for its metrics, once for the span);
                # the second Status(code) replaces the first, so once is the same.
                span.set_attribute("http.status_code", code)
                span.set_status(Status(status))
            if exception is not None:
                with trace.use_span(span, end_on_exit=False):
                    raise exception.with_traceback(exception.__traceback__)
        finally:
            context.detach(token)
            span.end()
        return response

    def close(self) -> None:
        self._transport.close()


def instrument(client: httpx.Client, tracer_provider) -> None:
    """Trace `client`'s calls: TracedTransport when it can, else the upstream instrumentor."""
    if not lean_possible():
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider()
        )
        return
    client._transport = TracedTransport(client._transport, tracer_provider)
    for pattern, transport in list(client._mounts.items()):
        if transport is not None:
            client._mounts[pattern] = TracedTransport(transport, tracer_provider)
