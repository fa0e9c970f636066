"""Build the OpenTelemetry tracer provider that exports spans straight to Jaeger.

Reads the standard variables, through the SDK itself where it can:
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (service.version, deployment.environment),
  OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (OTLP over HTTP,
  default http://localhost:4318), OTEL_EXPORTER_OTLP_TRACES_TIMEOUT and
  OTEL_EXPORTER_OTLP_TIMEOUT (read here, in milliseconds as the specification says),
  OTEL_TRACES_EXPORTER (otlp, or none: spans and trace ids without export),
  OTEL_TRACES_SAMPLER(_ARG), OTEL_SPAN_*_LIMIT / OTEL_ATTRIBUTE_*_LIMIT, OTEL_BSP_*
  (batch size, queue size, delay, export timeout) and OTEL_SDK_DISABLED;
  TELEMETRY_SIGNALS without "traces" switches tracing off as OTEL_SDK_DISABLED does.

Spans leave through the SDK's BatchSpanProcessor and OTLPSpanExporter, used through
their public constructors only: the request thread only appends to a bounded queue, so
an unreachable Jaeger costs dropped spans, never a slow or failed request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from .settings import (
    ConfigError,
    env_bool,
    env_float,
    env_signals,
    env_str,
)

# Default of OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT, which bounds one export attempt: a Jaeger
# that never answers holds the batch thread (never a request thread) for 5 s at a time.
_DEFAULT_EXPORT_TIMEOUT_S = 5.0
# Most specific first, as the specification orders them.
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
# The most a worker spends flushing spans at exit. gunicorn's graceful_timeout (25 s)
# must hold the in-flight requests and this; Kubernetes kills at 30 s.
SHUTDOWN_BUDGET_S = 5.0

log = logging.getLogger("obs_telemetry.tracing")


def tracing_disabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env_bool(env, "OTEL_SDK_DISABLED", False) or "traces" not in env_signals(env)


def build_resource(default_service_name: str, version: str) -> Resource:
    """Resource from the OTEL_* variables in os.environ, with defaults for the rest."""
    from_env = Resource.create({}).attributes
    attributes = {
        "service.name": default_service_name,
        "service.version": version,
        "deployment.environment": "development",
    }
    for key, value in from_env.items():
        # The SDK fills in "unknown_service" when OTEL_SERVICE_NAME is unset; our
        # default is better than that placeholder.
        if (
            key == "service.name"
            and not os.environ.get("OTEL_SERVICE_NAME")
            and str(value).startswith("unknown_service")
        ):
            continue
        attributes[key] = value
    # Newer semantic conventions renamed the key; set both so that every Jaeger and
    # Grafana version finds it.
    attributes.setdefault("deployment.environment.name", attributes["deployment.environment"])
    return Resource(attributes)


def build_tracer_provider(
    default_service_name: str,
    version: str,
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracerProvider:
    """A provider exporting over OTLP/HTTP in batches, or through `exporter` if given."""
    env = os.environ if environ is None else environ
    exporter_name = env_str(env, "OTEL_TRACES_EXPORTER", "otlp").lower()
    if exporter_name not in ("otlp", "none"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={exporter_name!r}: use otlp or none")
    provider = TracerProvider(
        resource=build_resource(default_service_name, version),
        # atexit is not reliable under gunicorn workers; the worker_exit hook shuts down.
        shutdown_on_exit=False,
    )
    if exporter is None and exporter_name == "none":
        # Spans still exist, so trace ids reach logs, exemplars and the backend.
        return provider
    if exporter is None:
        # Imported here so that importing this module costs nothing when tracing is off.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Passed explicitly because the Python exporter reads these variables as
        # seconds, where the specification (and every other SDK) says milliseconds.
        exporter = OTLPSpanExporter(timeout=export_timeout_seconds(env))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def export_timeout_seconds(environ: Mapping[str, str]) -> float:
    """OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, else OTEL_EXPORTER_OTLP_TIMEOUT (ms), in seconds."""
    for name in _TIMEOUT_VARIABLES:
        if environ.get(name, "").strip():
            return env_float(environ, name, 0.0, minimum=0) / 1000.0
    return _DEFAULT_EXPORT_TIMEOUT_S


def install_global_tracer_provider(default_service_name: str, version: str) -> None:
    """Set the process-wide provider once; called from gunicorn's post_fork hook.

    A provider built before fork would own a batch-export thread that the worker does
    not inherit, so this must run in the worker, never in the gunicorn master.
    """
    if tracing_disabled() or isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    trace.set_tracer_provider(build_tracer_provider(default_service_name, version))


def shutdown_global_tracer_provider(budget: float = SHUTDOWN_BUDGET_S) -> bool:
    """Flush pending spans and stop the exporter, for at most `budget` seconds.

    The SDK's own shutdown may wait 30 s per processor when the exporter hangs, so it
    runs in a daemon thread that is abandoned at the deadline: the spans still queued
    are lost, the process exits on time. Returns whether the flush finished.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return True
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(budget)
    if worker.is_alive():
        log.warning(
            "span flush did not finish in %.0f s (exporter unreachable?); "
            "pending spans are dropped",
            budget,
        )
        return False
    return True
