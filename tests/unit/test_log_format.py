"""EcsJsonFormatter writes, byte for byte, the lines its python-json-logger version wrote.

The reference below is the previous implementation (a python-json-logger JsonFormatter
subclass), kept here only to compare against.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

import pytest
from flask import current_app, has_app_context
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from obs_telemetry.logs import ECS_VERSION, EcsJsonFormatter


class ReferenceFormatter(JsonFormatter):
    def __init__(self, service_name=None, service_version=None, environment=None, **kwargs):
        super().__init__(**kwargs)
        self.service_name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown"
        self._static = {"ecs.version": ECS_VERSION, "service.name": self.service_name}
        if service_version:
            self._static["service.version"] = service_version
        if environment:
            self._static["service.environment"] = environment

    def add_fields(self, log_record, record, message_dict) -> None:
        log_record["@timestamp"] = (
            datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        log_record["log.level"] = record.levelname.lower()
        log_record["log.logger"] = record.name
        log_record["message"] = record.message
        log_record.update(self._static)
        if has_app_context():
            state = current_app.extensions.get("obs_telemetry")
            if state is not None:
                log_record["service.name"] = state.service_name
        log_record["process.pid"] = os.getpid()
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            log_record["trace.id"] = format(context.trace_id, "032x")
            log_record["span.id"] = format(context.span_id, "016x")
        super().add_fields(log_record, record, message_dict)
        for key in ("exc_info", "stack_info", "color_message"):
            log_record.pop(key, None)
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, _ = record.exc_info
            log_record.setdefault("error.type", exc_type.__name__)
            log_record.setdefault("error.message", str(exc))
            log_record["error.stack_trace"] = self.formatException(record.exc_info)
        for key in [k for k, v in log_record.items() if v is None]:
            del log_record[key]


def records():
    logger = logging.getLogger("obs_telemetry.access")
    try:
        raise ValueError("boom\nsecond line é")
    except ValueError:
        exc_info = sys.exc_info()
    fields = {"http.request.method": "GET", "http.response.status_code": 200, "event.duration": 5}
    yield logger.makeRecord(
        logger.name, logging.INFO, "f", 1, "%s %s", ("GET", "/x"), None, extra=fields
    )
    yield logger.makeRecord(logger.name, logging.WARNING, "f", 1, "plain ünicode ☃", (), None)
    yield logger.makeRecord(
        logger.name,
        logging.ERROR,
        "f",
        1,
        "failed",
        (),
        exc_info,
        extra={"error.type": "database_error", "none": None},
    )
    yield logger.makeRecord(logger.name, logging.ERROR, "f", 1, "failed", (), exc_info)
    yield logger.makeRecord(
        logger.name, logging.INFO, "f", 1, {"dict": "message", "n": 1}, (), None
    )
    yield logger.makeRecord(
        logger.name,
        logging.INFO,
        "f",
        1,
        "odd extras",
        (),
        None,
        extra={
            "when": datetime(2026, 1, 2, tzinfo=UTC),
            "obj": ValueError("as an extra"),
            "_private": 1,
            "color_message": "x",
            "list": [1, "a"],
        },
    )
    record = logger.makeRecord(
        logger.name,
        logging.DEBUG,
        "f",
        1,
        "with stack",
        (),
        None,
        sinfo="Stack (most recent call last):\n  here",
    )
    yield record


@pytest.mark.parametrize("args", [("frontend", "1.0.0", "test"), (None, None, None)])
def test_lines_are_identical_to_the_python_json_logger_version(args):
    ours, reference = EcsJsonFormatter(*args), ReferenceFormatter(*args)
    for record in records():
        assert ours.format(record) == reference.format(record)


def test_lines_are_identical_inside_a_request_with_a_span(backend_app, tracer_provider):
    ours, reference = EcsJsonFormatter("x"), ReferenceFormatter("x")
    tracer = tracer_provider.get_tracer("t")
    with backend_app.test_request_context("/"), tracer.start_as_current_span("s"):
        for record in records():
            line = ours.format(record)
            assert line == reference.format(record)
            assert '"service.name": "backend"' in line and '"trace.id": ' in line


def test_the_comparison_notices_a_difference():
    record = next(records())
    assert EcsJsonFormatter("a").format(record) != ReferenceFormatter("b").format(record)
