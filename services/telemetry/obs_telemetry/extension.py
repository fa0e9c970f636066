"""The Flask extension that instruments one service: metrics, traces and logs.

Reads OTEL_PYTHON_FLASK_EXCLUDED_URLS and OTEL_PYTHON_EXCLUDED_URLS only to know whether
they are set (when neither is, the scrape and probe paths are excluded by default; when
either is, opentelemetry-instrumentation-flask applies it as it documents). The app
config's TELEMETRY_SIGNALS (settings.py) says which signals are on, and the tracer
provider it falls back to reads the other OTEL_* variables (see tracing.py).

Spans are recorded by OpenTelemetry's own instrumentations, as shipped:
opentelemetry-instrumentation-flask for server spans and -httpx for client spans, so
span names, attributes (OTEL_SEMCONV_STABILITY_OPT_IN), header capture and the
instrumentation scope are upstream's. Usage, as with any Flask extension:

    telemetry = Telemetry(app)                  # or Telemetry() then init_app(app)
    Telemetry(app, registry=CollectorRegistry(), tracer_provider=provider)  # in tests

init_app is idempotent: a second call on the same app changes nothing.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, current_app, g, jsonify, request
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException

from .errors import AppError
from .logs import configure_logging
from .metrics import KNOWN_METHODS, UNMATCHED_ENDPOINT, Metrics
from .settings import SIGNALS
from .tracing import build_resource, install_global_tracer_provider

EXTENSION_KEY = "obs_telemetry"

# Scrapes and probes are not user traffic: counting them would inflate request rates
# and flood logs and traces with lines nobody reads.
UNOBSERVED_PATHS = frozenset({"/metrics", "/livez", "/readyz"})
# Anchored after the host: /api/items/metrics is a route like any other. Only a default:
# the instrumentation's own variables replace it (see _excluded_urls).
DEFAULT_EXCLUDED_URLS = r"^https?://[^/]+/(metrics|livez|readyz)/?(\?.*)?$"
_EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
# The app's own error category on a span. Not error.type: in the stable HTTP conventions
# the instrumentation sets error.type itself (the status code or exception class), and a
# value of ours would overwrite it. Namespaced after the package, as the semantic
# conventions ask of attributes they do not define.
APP_ERROR_TYPE_ATTRIBUTE = "obs_telemetry.error.type"

access_log = logging.getLogger("obs_telemetry.access")
event_log = logging.getLogger("obs_telemetry.events")


class TelemetryState:
    """What init_app builds for one app; found at app.extensions["obs_telemetry"]."""

    def __init__(self, service_name: str, registry, tracer_provider, signals=SIGNALS) -> None:
        # From OTEL_SERVICE_NAME when set, so that logs and spans always agree.
        self.service_name = service_name
        self.registry = registry
        self.metrics = Metrics(registry)
        self.tracer_provider = tracer_provider
        self.metrics_enabled = "metrics" in signals
        self.traces_enabled = "traces" in signals
        self.logs_enabled = "logs" in signals
        self.ready = True


class Telemetry:
    def __init__(
        self,
        app: Flask | None = None,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider=None,
    ) -> None:
        self._registry = registry
        self._tracer_provider = tracer_provider
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            return
        # The same resolution as the tracer provider's resource (OTEL_SERVICE_NAME,
        # OTEL_RESOURCE_ATTRIBUTES, then the app's defaults), for logs and /stats.
        default_name = app.config.get("SERVICE_NAME") or app.name
        resource = build_resource(
            default_name, app.config.get("SERVICE_VERSION", "0.0.0")
        ).attributes
        service_name = resource["service.name"]
        if app.config.get("TELEMETRY_CONFIGURE_LOGGING", True):
            configure_logging(
                service_name,
                app.config.get("LOG_LEVEL", "info"),
                resource["service.version"],
                resource["deployment.environment"],
            )

        provider = self._tracer_provider
        if provider is None:
            # Under gunicorn the post_fork hook has already installed the provider; this
            # covers `flask run` and other single-process servers.
            install_global_tracer_provider(default_name, resource["service.version"])
            provider = trace.get_tracer_provider()

        # A fresh registry per app, never the global one: two apps in one process (as in
        # tests) would otherwise collide on metric names.
        registry = self._registry if self._registry is not None else CollectorRegistry()
        signals = app.config.get("TELEMETRY_SIGNALS", SIGNALS)
        state = TelemetryState(service_name, registry, provider, signals)
        app.extensions[EXTENSION_KEY] = state

        if state.traces_enabled:
            FlaskInstrumentor().instrument_app(
                app,
                tracer_provider=provider,
                # Request metrics come from prometheus_client; OTel's would be a second,
                # unexported copy costing time on every request.
                meter_provider=NoOpMeterProvider(),
                request_hook=_name_unmatched_span,
                **_excluded_urls(),
            )
        app.before_request(_before_request)
        app.after_request(_after_request)
        # Registered after the instrumentation's teardown, so it runs before it (Flask
        # runs teardowns in reverse) while the server span is still open.
        app.teardown_request(_teardown_request)
        app.register_error_handler(AppError, _handle_app_error)
        app.register_error_handler(HTTPException, _handle_http_exception)
        app.register_error_handler(Exception, _handle_unexpected)


def state_of(app: Flask | None = None) -> TelemetryState:
    return (app or current_app).extensions[EXTENSION_KEY]


def instrument_http_client(client, app: Flask | None = None):
    """Trace an httpx.Client's calls and propagate W3C traceparent through them."""
    state = state_of(app)
    if not state.traces_enabled:
        return client
    # Imported here so that an app with tracing off never loads the instrumentation.
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    # instrument_client itself warns and does nothing for a client it already
    # instrumented; a second call from us is a no-op, never a second span per call.
    HTTPXClientInstrumentor.instrument_client(
        client,
        tracer_provider=state.tracer_provider,
        meter_provider=NoOpMeterProvider(),
    )
    return client


def _excluded_urls() -> dict:
    """The excluded_urls argument: ours only when the standard variables are unset.

    instrument_app(excluded_urls=...) would override the variables, so it is passed
    only when the user set neither; otherwise the instrumentation reads them (at its
    import, as it documents).
    """
    if any(os.environ.get(name) for name in _EXCLUDED_URLS_VARIABLES):
        return {}
    return {"excluded_urls": DEFAULT_EXCLUDED_URLS}


def record_error(
    error_type: str, message: str, exc: BaseException | None = None, status: int = 500
) -> None:
    """Count an error, tag the current span and the access log line.

    `status` is the HTTP status the request will be answered with. The HTTP semantic
    conventions leave a server span's status UNSET for 4xx (the client's error, not the
    server's), so only a 5xx marks the span ERROR and records the exception; every
    error carries the app's category in APP_ERROR_TYPE_ATTRIBUTE.
    """
    state = state_of()
    if state.metrics_enabled:
        state.metrics.observe_error(error_type)
    g.obs_error = (error_type, message, status)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(APP_ERROR_TYPE_ATTRIBUTE, error_type)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))
            if exc is not None:
                span.record_exception(exc)


def _name_unmatched_span(span, environ) -> None:
    # The instrumentation names a span after the raw path when no route matched; a
    # scan of random URLs would then create an operation per URL in Jaeger. Semantic
    # conventions name such a span after the method alone.
    if span.is_recording() and request.url_rule is None:
        span.update_name(request.method if request.method in KNOWN_METHODS else "HTTP")


def _before_request() -> None:
    state = state_of()
    if state.metrics_enabled:
        g.obs_active = True
        state.metrics.active_users.inc()
    if state.metrics_enabled or state.logs_enabled:
        g.obs_start = time.perf_counter()


def _after_request(response):
    if request.path in UNOBSERVED_PATHS or "obs_start" not in g:
        return response
    duration = time.perf_counter() - g.obs_start
    endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ENDPOINT
    state = state_of()
    if state.metrics_enabled:
        context = trace.get_current_span().get_span_context()
        trace_id = format(context.trace_id, "032x") if context.trace_flags.sampled else None
        state.metrics.observe_request(
            endpoint, request.method, response.status_code, duration, trace_id
        )
    if not state.logs_enabled:
        return response
    fields = {
        "event.kind": "event",
        "event.category": "web",
        "http.request.method": request.method,
        "url.path": request.path,
        "http.route": endpoint,
        "http.response.status_code": response.status_code,
        "event.duration": int(duration * 1e9),
    }
    error = g.get("obs_error")
    if error is not None:
        fields["error.type"], fields["error.message"] = error[0], error[1]
    access_log.info("%s %s %s", request.method, request.path, response.status_code, extra=fields)
    return response


def _teardown_request(exc) -> None:
    if g.pop("obs_active", False):
        state_of().metrics.active_users.dec()
    error = g.get("obs_error")
    span = trace.get_current_span()
    if error is not None and error[2] >= 500 and span.is_recording():
        # The Flask instrumentation sets the span status from the HTTP code once the
        # response starts, dropping our description; put it back before the span ends.
        span.set_status(Status(StatusCode.ERROR, f"{error[0]}: {error[1]}"))


def _handle_app_error(exc: AppError):
    record_error(exc.error_type, exc.message, exc, exc.status)
    if not state_of().logs_enabled:
        return jsonify(exc.to_dict()), exc.status
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    event_log.log(
        level,
        "%s: %s",
        exc.error_type,
        exc.message,
        extra={"error.type": exc.error_type, "error.message": exc.message},
    )
    return jsonify(exc.to_dict()), exc.status


def _handle_http_exception(exc: HTTPException):
    # Routing and protocol errors (404, 405, malformed JSON...) are the client's, not
    # the application's: answered as JSON, not counted in flask_errors_total.
    name = (exc.name or "error").lower().replace(" ", "_")
    return jsonify({"error": name, "message": exc.description}), exc.code or 500


def _handle_unexpected(exc: Exception):
    # error.type is the stable category; the exception class is in error.stack_trace.
    event_log.exception("unhandled exception", extra={"error.type": "internal_error"})
    record_error("internal_error", f"{type(exc).__name__}: {exc}", exc)
    return jsonify({"error": "internal_error", "message": "internal server error"}), 500


__all__ = [
    "APP_ERROR_TYPE_ATTRIBUTE",
    "Telemetry",
    "TelemetryState",
    "instrument_http_client",
    "record_error",
    "state_of",
]
