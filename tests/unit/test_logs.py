"""JSON log lines: ECS names, trace correlation, stable types, one line per traceback."""

from __future__ import annotations

import json
import logging

from opentelemetry.trace import SpanKind

from obs_telemetry.logs import EcsJsonFormatter

ECS_ACCESS_FIELDS = {
    "@timestamp": str,
    "log.level": str,
    "message": str,
    "service.name": str,
    "trace.id": str,
    "span.id": str,
    "http.request.method": str,
    "url.path": str,
    "http.response.status_code": int,
    "event.duration": int,
}


def json_lines(capsys) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_access_line_has_ecs_fields_and_the_request_trace_id(backend_client, span_exporter, capsys):
    capsys.readouterr()
    backend_client.get("/api/items/4")
    (line,) = [r for r in json_lines(capsys) if r["log.logger"] == "obs_telemetry.access"]
    for field, kind in ECS_ACCESS_FIELDS.items():
        assert isinstance(line.get(field), kind), f"{field} = {line.get(field)!r}"
    (span,) = span_exporter.get_finished_spans()
    assert line["trace.id"] == format(span.context.trace_id, "032x")
    assert line["span.id"] == format(span.context.span_id, "016x")
    assert line["service.name"] == "backend"
    assert line["url.path"] == "/api/items/4"
    assert line["@timestamp"].endswith("Z")


def test_every_line_of_a_request_carries_its_trace_id(backend_client, capsys):
    capsys.readouterr()
    backend_client.get("/error?type=database_error")
    lines = json_lines(capsys)
    assert len(lines) >= 2  # the error event and the access line
    assert len({line["trace.id"] for line in lines}) == 1
    assert all(line["error.type"] == "database_error" for line in lines)


def test_frontend_and_backend_lines_share_the_trace_id(client, span_exporter, capsys):
    capsys.readouterr()
    client.get("/")
    lines = [r for r in json_lines(capsys) if r["log.logger"] == "obs_telemetry.access"]
    assert {line["service.name"] for line in lines} == {"frontend", "backend"}
    assert len({line["trace.id"] for line in lines}) == 1
    trace_ids = {s.context.trace_id for s in span_exporter.get_finished_spans()}
    assert {int(line["trace.id"], 16) for line in lines} == trace_ids


def test_traceback_stays_inside_one_json_line(capsys):
    formatter = EcsJsonFormatter("unit")
    logger = logging.getLogger("unit.traceback")
    try:
        raise KeyError("missing")
    except KeyError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "boom",
            (),
            exc_info=__import__("sys").exc_info(),
        )
    text = formatter.format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["error.type"] == "KeyError"
    assert "Traceback (most recent call last)" in line["error.stack_trace"]
    assert "raise KeyError" in line["error.stack_trace"]


def test_unhandled_exception_is_a_json_500_with_the_stack_in_one_line(backend_app, capsys):
    @backend_app.get("/explode")
    def explode():
        raise RuntimeError("kaboom")

    capsys.readouterr()
    response = backend_app.test_client().get("/explode")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal_error", "message": "internal server error"}
    assert "kaboom" not in response.get_data(as_text=True)
    (event,) = [r for r in json_lines(capsys) if r["log.logger"] == "obs_telemetry.events"]
    assert event["error.type"] == "internal_error"
    assert "RuntimeError: kaboom" in event["error.stack_trace"]


def test_no_key_changes_type_across_lines(client, backend_app, capsys):
    capsys.readouterr()
    for path in (
        "/",
        "/items/1",
        "/items/99",
        "/error",
        "/health",
        "/stats",
        "/nope",
        "/slow?delay=x",
    ):
        client.get(path)
    client.post("/orders", json={"item_id": 1, "quantity": 2})
    client.post("/orders", data="not json")
    seen: dict[str, type] = {}
    lines = json_lines(capsys)
    assert len(lines) > 15
    for line in lines:
        for key, val in line.items():
            assert val is not None, f"{key} is null"
            assert seen.setdefault(key, type(val)) is type(val), f"{key} changed type"


def test_server_span_kind_is_server(backend_client, span_exporter):
    backend_client.get("/")
    assert [s.kind for s in span_exporter.get_finished_spans()] == [SpanKind.SERVER]


def test_otel_variables_name_the_service_in_logs(monkeypatch, registry, tracer_provider, capsys):
    import backend

    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-backend")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.version=2.1.0"
    )
    app = backend.create_app({"TESTING": True}, registry=registry, tracer_provider=tracer_provider)
    capsys.readouterr()
    app.test_client().get("/")
    (line,) = [r for r in json_lines(capsys) if r["log.logger"] == "obs_telemetry.access"]
    assert line["service.name"] == "shop-backend"
    assert line["service.environment"] == "staging"
    assert line["service.version"] == "2.1.0"
