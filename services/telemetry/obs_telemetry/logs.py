"""One JSON object per line on stdout, with Elastic Common Schema field names.

Reads OTEL_SERVICE_NAME (for gunicorn's own log lines, which start before any app) and
LOG_LEVEL. Every line written while a span is active carries that span's trace.id and
span.id, which is what lets Kibana jump from a log line to the trace in Jaeger.

Field types never change from one line to the next (Elasticsearch maps a field on the
first value it sees): absent values are left out rather than written as null, and
numbers such as http.response.status_code and event.duration are always integers.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

from flask import current_app, has_app_context
from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder

ECS_VERSION = "8.11.0"

# LogRecord attributes that are not extra fields (python-json-logger's list, so that
# the same attributes stay out of the line as when its formatter wrote them).
_NOT_EXTRA = frozenset(RESERVED_ATTRS) | {"message"}
# Attributes that would otherwise be copied out as extra fields.
_DROP = ("exc_info", "stack_info", "color_message")
# python-json-logger's encoder and settings (ASCII output; datetimes, exceptions and
# other objects as strings), built once instead of once per line.
_encode = JsonEncoder(ensure_ascii=True).encode


class EcsJsonFormatter(logging.Formatter):
    """Writes each record as one ECS JSON object.

    The lines are those python-json-logger's JsonFormatter wrote with the ECS fields
    added (tests/unit/test_log_format.py compares the two); this class builds the
    dictionary in one pass, about twice as fast (docs/benchmarks.md).
    """

    def __init__(
        self,
        service_name: str | None = None,
        service_version: str | None = None,
        environment: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.service_name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown"
        self._static = {"ecs.version": ECS_VERSION, "service.name": self.service_name}
        if service_version:
            self._static["service.version"] = service_version
        if environment:
            self._static["service.environment"] = environment

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, dict):
            message_dict = record.msg
            record.message = ""
        else:
            message_dict = None
            record.message = record.getMessage()
        log_record = {
            "@timestamp": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.message,
        }
        log_record.update(self._static)
        if has_app_context():
            # Several apps can share one process (tests, a dev server hosting both);
            # the app handling this line knows best which service it is.
            state = current_app.extensions.get("obs_telemetry")
            if state is not None:
                log_record["service.name"] = state.service_name
        # The pid is read per record: a formatter built in the gunicorn master is used
        # by forked workers too.
        log_record["process.pid"] = os.getpid()

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            log_record["trace.id"] = format(context.trace_id, "032x")
            log_record["span.id"] = format(context.span_id, "016x")

        # Dict messages, then extra fields from logger.info(..., extra={...}).
        if message_dict:
            log_record.update(message_dict)
        for key, value in record.__dict__.items():
            if key not in _NOT_EXTRA and not key.startswith("_"):
                log_record[key] = value
        for key in _DROP:
            log_record.pop(key, None)

        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, _ = record.exc_info
            log_record.setdefault("error.type", exc_type.__name__)
            log_record.setdefault("error.message", str(exc))
            # json.dumps escapes the newlines, so the whole traceback stays on one line.
            log_record["error.stack_trace"] = self.formatException(record.exc_info)
        if None in log_record.values():
            log_record = {k: v for k, v in log_record.items() if v is not None}
        return _encode(log_record)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time.

    Resolving the stream late keeps working when something swaps sys.stdout after
    start-up (pytest's capture does), and lets configure_logging find its own handler.
    """

    def __init__(self, stream=None) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(
    service_name: str, level: str = "info", version: str | None = None, environment=None
) -> None:
    """Route the root logger to stdout as ECS JSON. Safe to call more than once."""
    root = logging.getLogger()
    formatter = EcsJsonFormatter(service_name, version, environment)
    for handler in root.handlers:
        if isinstance(handler, _StdoutHandler):
            handler.setFormatter(formatter)
            break
    else:
        handler = _StdoutHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Werkzeug's access lines and httpx's per-call lines would duplicate ours.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def gunicorn_logconfig(level: str = "info") -> dict:
    """logging.config dict that makes gunicorn's own lines ECS JSON too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ecs": {"()": EcsJsonFormatter}},
        "handlers": {
            "stdout": {
                "class": "obs_telemetry.logs._StdoutHandler",
                "formatter": "ecs",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # Access lines come from the app (with trace ids); gunicorn's are off.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
