"""Spans of the two services: status and app error category, one trace across both.

What any instrumentation must do by the specifications is in test_conformance.py; this
file checks the services' own routes and configuration.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from obs_telemetry import SIMULATED_ERRORS
from obs_telemetry.extension import APP_ERROR_TYPE_ATTRIBUTE


def server_spans(exporter, service=None):
    return [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]


@pytest.mark.parametrize("error_type", sorted(SIMULATED_ERRORS))
def test_error_spans_carry_the_app_category(backend_client, span_exporter, error_type):
    response = backend_client.get(f"/error?type={error_type}")
    status = SIMULATED_ERRORS[error_type]
    assert response.status_code == status
    assert response.get_json()["error"] == error_type
    (span,) = server_spans(span_exporter)
    assert span.attributes[APP_ERROR_TYPE_ATTRIBUTE] == error_type
    if status >= 500:
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description.startswith(error_type)
        assert [e.name for e in span.events] == ["exception"]
    else:
        # HTTP semantic conventions: a server span's status stays unset for 4xx.
        assert span.status.status_code == StatusCode.UNSET
        assert span.events == ()


def test_slow_timeout_is_an_error_span(backend_app, span_exporter):
    backend_app.config.update(SLOW_TIMEOUT_RATE=1.0, SLOW_TIMEOUT_SECONDS=0.01)
    response = backend_app.test_client().get("/slow")
    assert response.status_code == 504
    assert response.get_json()["error"] == "timeout_error"
    (span,) = server_spans(span_exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[APP_ERROR_TYPE_ATTRIBUTE] == "timeout_error"


def test_missing_item_is_a_404_with_unset_status(backend_client, span_exporter):
    assert backend_client.get("/api/items/99").status_code == 404
    (span,) = server_spans(span_exporter)
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes[APP_ERROR_TYPE_ATTRIBUTE] == "not_found"


def test_successful_requests_leave_span_status_unset(backend_client, span_exporter):
    assert backend_client.get("/api/items/1").status_code == 200
    (span,) = server_spans(span_exporter)
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes["http.route"] == "/api/items/<int:item_id>"


def test_one_trace_spans_frontend_and_backend(client, span_exporter):
    assert client.get("/items/2").status_code == 200
    spans = span_exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    by_kind = {}
    for span in spans:
        by_kind.setdefault(span.kind, []).append(span)
    (client_span,) = by_kind[SpanKind.CLIENT]
    frontend_span, backend_span = sorted(
        by_kind[SpanKind.SERVER], key=lambda s: s.attributes["http.route"].startswith("/api")
    )
    assert frontend_span.attributes["http.route"] == "/items/<int:item_id>"
    assert backend_span.attributes["http.route"] == "/api/items/<int:item_id>"
    # frontend server span -> its outbound client span -> backend server span
    assert client_span.parent.span_id == frontend_span.context.span_id
    assert backend_span.parent.span_id == client_span.context.span_id


def test_malformed_traceparent_starts_a_new_trace(backend_client, span_exporter):
    for header in ("garbage", "00-zz-yy-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"):
        response = backend_client.get("/api/items", headers={"traceparent": header})
        assert response.status_code == 200
    spans = server_spans(span_exporter)
    assert len(spans) == 3
    assert all(s.parent is None for s in spans)
    assert len({s.context.trace_id for s in spans}) == 3


def test_valid_traceparent_is_continued(backend_client, span_exporter):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    backend_client.get("/api/items", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    (span,) = server_spans(span_exporter)
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent


def test_unmatched_paths_share_one_span_name(backend_client, span_exporter):
    for path in ("/wp-login.php", "/random/123"):
        backend_client.get(path)
    assert [s.name for s in server_spans(span_exporter)] == ["GET", "GET"]


def test_only_the_real_scrape_and_probe_paths_are_untraced(backend_app, span_exporter):
    @backend_app.get("/reports/metrics")
    def reports_metrics():
        return {"ok": True}

    client = backend_app.test_client()
    client.get("/metrics")
    client.get("/livez")
    client.get("/reports/metrics")
    assert [s.attributes["http.route"] for s in server_spans(span_exporter)] == ["/reports/metrics"]


def test_traces_exporter_none_keeps_trace_ids_without_exporting(monkeypatch):
    from obs_telemetry.tracing import build_tracer_provider

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    sent = []
    monkeypatch.setattr(BatchSpanProcessor, "on_end", lambda self, span: sent.append(span))
    provider = build_tracer_provider("svc", "1.0.0")
    with provider.get_tracer("t").start_as_current_span("s") as span:
        assert span.get_span_context().is_valid
    assert sent == []


def test_unknown_traces_exporter_is_a_config_error(monkeypatch):
    from obs_telemetry import ConfigError
    from obs_telemetry.tracing import build_tracer_provider

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        build_tracer_provider("svc", "1.0.0")


def test_spans_leave_through_the_sdks_batch_processor_and_otlp_exporter(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from obs_telemetry.tracing import build_tracer_provider

    made = []
    original = BatchSpanProcessor.__init__

    def recording_init(self, exporter, *args, **kwargs):
        made.append((type(self), type(exporter)))
        original(self, exporter, *args, **kwargs)

    monkeypatch.setattr(BatchSpanProcessor, "__init__", recording_init)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    provider = build_tracer_provider("svc", "1.0.0")
    provider.shutdown()
    assert made == [(BatchSpanProcessor, OTLPSpanExporter)]


@pytest.mark.parametrize(
    ("environ", "seconds"),
    [
        ({}, 5.0),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2000"}, 2.0),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1500"}, 1.5),
        # The signal-specific variable wins over the general one (OTLP exporter spec).
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1500", "OTEL_EXPORTER_OTLP_TIMEOUT": "9000"}, 1.5),
    ],
)
def test_export_timeout_follows_the_otlp_variables_in_milliseconds(environ, seconds):
    from obs_telemetry.tracing import export_timeout_seconds

    assert export_timeout_seconds(environ) == seconds


def test_a_bad_export_timeout_is_a_config_error():
    from obs_telemetry import ConfigError
    from obs_telemetry.tracing import export_timeout_seconds

    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"):
        export_timeout_seconds({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "soon"})
