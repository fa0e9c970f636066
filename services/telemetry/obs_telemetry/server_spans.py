"""Server spans for a Flask app: what opentelemetry-instrumentation-flask records, cheaper.

Reads OTEL_SEMCONV_STABILITY_OPT_IN (through the instrumentation's own helpers, once at
start-up), and whether OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_* and
OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS are set (once). The spans are the
upstream instrumentation's: the same instrumentation scope, span name, kind, start
time, parent (W3C traceparent through the global propagator), attributes (computed by
the same opentelemetry-instrumentation-wsgi functions) and status.
tests/unit/test_server_spans.py runs the same requests through both and compares what
they export.

Why not the upstream instrumentation itself: per request it computes the request
attributes twice, sets each attribute twice, renders the full URL up to three times to
test the exclusion pattern, reads the header-capture variables from the environment,
attaches an SQL-commenter context, and feeds an active-requests counter and duration
histograms that this project does not export (its request metrics are Prometheus').
Measured: about 270 us of CPU per request for a server span; this module, about a
third of that (docs/benchmarks.md). It also keeps the request attributes of the
(connection, URL) pairs it has seen, and makes the span current with one context
attach where upstream uses two and a generator-based context manager.
"""

from __future__ import annotations

import os
from time import time_ns

from flask import Flask, request
from opentelemetry import context, trace
from opentelemetry.instrumentation import wsgi as otel_wsgi
from opentelemetry.instrumentation._semconv import (
    _get_schema_url,
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
)
from opentelemetry.instrumentation.flask import __name__ as _UPSTREAM_SCOPE
from opentelemetry.instrumentation.flask.version import __version__ as _UPSTREAM_VERSION
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS,
    sanitize_method,
)

_START_KEY = "obs_telemetry.span_start_ns"
_STATE_KEY = "obs_telemetry.server_span"

# Every environ key that collect_request_attributes (and wsgiref's request_uri, which it
# calls when the server sets neither RAW_URI nor REQUEST_URI) reads: its result is a
# function of these values, the semantic-convention mode and one environment variable
# (read once, below). tests/unit/test_server_spans.py records the keys the upstream
# function reads and fails when one is missing here.
REQUEST_ATTRIBUTE_KEYS = (
    "REQUEST_METHOD",
    "SERVER_NAME",
    "wsgi.url_scheme",
    "HTTP_HOST",
    "SERVER_PORT",
    "RAW_URI",
    "REQUEST_URI",
    "PATH_INFO",
    "QUERY_STRING",
    "SCRIPT_NAME",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REMOTE_HOST",
    "HTTP_USER_AGENT",
    "SERVER_PROTOCOL",
)
# Computing the attributes costs about 20 us (URL parsing, method and user-agent
# checks); a service sees the same few (client connection, URL) pairs over and over, so
# the result is kept. Bounded by clearing, and requests whose keyed values are long (a
# 4 KB URL or user agent) are not kept: a scan of random URLs costs inserts, and the
# cache at most about 1024 x 2 KB of keys and as much of attributes.
_ATTRIBUTE_CACHE_LIMIT = 1024
_CACHEABLE_KEY_CHARS = 2048


class ServerSpans:
    """Installs the server-span hooks on one app; see the module docstring."""

    def __init__(self, app: Flask, tracer_provider, excluded_paths, request_hook=None) -> None:
        _OpenTelemetrySemanticConventionStability._initialize()
        self.mode = (
            _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
                _OpenTelemetryStabilitySignalType.HTTP
            )
        )
        # The upstream instrumentation's scope, so that the exported spans are identical.
        self.tracer = trace.get_tracer(
            _UPSTREAM_SCOPE,
            _UPSTREAM_VERSION,
            tracer_provider,
            schema_url=_get_schema_url(self.mode),
        )
        self.excluded_paths = frozenset(excluded_paths)
        self.request_hook = request_hook
        self.capture_request_headers = bool(
            os.environ.get(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST)
        )
        self.capture_response_headers = bool(
            os.environ.get(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE)
        )
        # sanitize_method reads this variable on every call: with it set, the
        # attributes are computed afresh each time, as upstream does.
        self._attribute_cache: dict[tuple, dict] | None = (
            None if os.environ.get(OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS) else {}
        )
        app.wsgi_app = self._wrap_wsgi(app.wsgi_app)
        app.before_request(self._before_request)
        app.teardown_request(self._teardown_request)

    def _wrap_wsgi(self, wsgi_app):
        def traced_wsgi_app(environ, start_response):
            # The span starts here, before routing, as the upstream's does.
            environ[_START_KEY] = time_ns()

            def traced_start_response(status, headers, *args, **kwargs):
                state = environ.get(_STATE_KEY)
                if state is not None:
                    span, attributes = state[0], state[1]
                    propagator = get_global_response_propagator()
                    if propagator:
                        propagator.inject(
                            headers, setter=otel_wsgi.default_response_propagation_setter
                        )
                    otel_wsgi.add_response_attributes(span, status, headers, attributes, self.mode)
                    if self.capture_response_headers and span.is_recording():
                        custom = otel_wsgi.collect_custom_response_headers_attributes(headers)
                        if custom:
                            span.set_attributes(custom)
                return start_response(status, headers, *args, **kwargs)

            return wsgi_app(environ, traced_start_response)

        return traced_wsgi_app

    def _excluded(self) -> bool:
        # The same set as extension._EXCLUDED_URLS: the path, with or without a final "/".
        path = request.path
        return path in self.excluded_paths or (
            path.endswith("/") and path[:-1] in self.excluded_paths
        )

    def _request_attributes(self, environ) -> dict:
        cache = self._attribute_cache
        if cache is None:
            return otel_wsgi.collect_request_attributes(environ, self.mode)
        key = tuple([environ.get(name) for name in REQUEST_ATTRIBUTE_KEYS])
        try:
            cached = cache.get(key)
        except TypeError:  # a value that is not hashable: not a PEP 3333 environ
            return otel_wsgi.collect_request_attributes(environ, self.mode)
        if cached is None:
            cached = otel_wsgi.collect_request_attributes(environ, self.mode)
            if sum([len(value) for value in key if isinstance(value, str)]) > _CACHEABLE_KEY_CHARS:
                return cached
            if len(cache) >= _ATTRIBUTE_CACHE_LIMIT:
                cache.clear()
            cache[key] = cached
        # A copy: the caller adds http.route, and the response hook writes into it.
        return dict(cached)

    def _before_request(self) -> None:
        if self._excluded():
            return
        environ = request.environ
        method = sanitize_method(environ.get("REQUEST_METHOD", "").strip())
        rule = request.url_rule
        if rule is not None:
            name = f"{'HTTP' if method == '_OTHER' else method} {rule.rule}"
        else:
            name = otel_wsgi.get_default_span_name(environ)
        attributes = self._request_attributes(environ)
        if rule is not None:
            attributes["http.route"] = rule.rule
        # What opentelemetry.instrumentation.utils._start_internal_or_server_span and
        # trace.use_span do, in one context attach instead of two and without
        # use_span's generator: a SERVER span whose parent is the incoming traceparent,
        # or an INTERNAL child when a span is already current (a WSGI middleware's).
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent_context = extract(environ, getter=otel_wsgi.wsgi_getter)
            kind = SpanKind.SERVER
        else:
            parent_context = context.get_current()
            kind = SpanKind.INTERNAL
        span = self.tracer.start_span(
            name,
            parent_context,
            kind=kind,
            attributes=attributes,
            start_time=environ.get(_START_KEY),
        )
        if self.request_hook is not None:
            self.request_hook(span, environ)
        if self.capture_request_headers and span.is_recording():
            custom = otel_wsgi.collect_custom_request_headers_attributes(environ)
            if custom:
                span.set_attributes(custom)
        token = context.attach(trace.set_span_in_context(span, parent_context))
        environ[_STATE_KEY] = (span, attributes, token)

    def _teardown_request(self, exc) -> None:
        state = request.environ.pop(_STATE_KEY, None)
        if state is None:
            return
        span, token = state[0], state[2]
        if exc is not None:
            # use_span's own exception handling (exception event, ERROR status), so an
            # unhandled exception is recorded exactly as upstream records it.
            activation = trace.use_span(span, end_on_exit=False)
            activation.__enter__()
            activation.__exit__(type(exc), exc, exc.__traceback__)
        context.detach(token)
        span.end()
