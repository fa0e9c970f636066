"""One JSON object per line on stdout, with Elastic Common Schema field names.

Reads OTEL_SERVICE_NAME (for gunicorn's own log lines, which start before any app) and
LOG_LEVEL. Every line written while a span is active carries that span's trace.id and
span.id, which is what lets Kibana jump from a log line to the trace in Jaeger.

Field types never change from one line to the next (Elasticsearch maps a field on the
first value it sees): absent values are left out rather than written as null, and
numbers such as http.response.status_code and event.duration are always integers.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sys
import threading
import weakref
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


# How long a line may wait in a worker's buffer before it is written (seconds), and how
# many lines may wait before the thread that logs writes them itself.
FLUSH_INTERVAL_S = 0.1
MAX_PENDING_LINES = 10_000

# Handlers that have batched, reset in a forked child (see _reset_in_child).
_batching_handlers: weakref.WeakSet[_StdoutHandler] = weakref.WeakSet()
_fork_hook_registered = False


def _reset_in_child() -> None:
    for handler in list(_batching_handlers):
        handler._reset_state()


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time; in a gunicorn worker, in batches.

    Resolving the stream late keeps working when something swaps sys.stdout after
    start-up (pytest's capture does), and lets configure_logging find its own handler.

    By default each line is written and flushed as it is logged. A gunicorn worker calls
    start_background_flush() after fork: from then on, the thread that logs only
    formats the line and queues it, and a background thread writes what has queued
    every FLUSH_INTERVAL_S in one write. Under load, one write() per line made each
    request thread give up the GIL once more per request and queue behind the other
    threads to get it back: 20.3 context switches per request against 16.4 batched
    (the app without logs: 16.3; docs/benchmarks.md).

    Queued lines are kept until written: a full queue (MAX_PENDING_LINES) is written by
    the thread that logs, and flush() (called by logging at exit, by the worker_exit
    hook and before /crash's hard exit) writes whatever is queued. A SIGKILL loses the
    last FLUSH_INTERVAL_S of lines; a write that fails (stdout closed) is reported on
    stderr and its lines are dropped, as StreamHandler drops a line it cannot write.
    """

    def __init__(self, stream=None) -> None:
        super().__init__()
        self._reset_state()

    def _reset_state(self) -> None:
        """An empty queue, writing line by line; also a forked child's fresh start: the
        parent's queued lines are the parent's to write, and its lock may have been
        held by one of its threads."""
        self._pending: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        # Set to stop the current flush thread; each thread gets its own.
        self._stop = threading.Event()
        # The pid whose flush thread is running; None while writing line by line.
        self._flusher_pid: int | None = None

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def start_background_flush(self) -> None:
        """Queue lines and write them from a background thread (idempotent per process)."""
        global _fork_hook_registered
        if self._flusher_pid == os.getpid():
            return
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_reset_in_child)
            _fork_hook_registered = True
        _batching_handlers.add(self)
        self._stop.set()
        self._stop = threading.Event()
        self._flusher_pid = os.getpid()
        threading.Thread(
            target=self._flush_loop, args=(self._wake, self._stop), name="log-flush", daemon=True
        ).start()

    def _flush_loop(self, wake: threading.Event, stop: threading.Event) -> None:
        while not stop.is_set():
            wake.wait(FLUSH_INTERVAL_S)
            wake.clear()
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        if self._flusher_pid != os.getpid():
            super().emit(record)
            return
        try:
            self._pending.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if len(self._pending) >= MAX_PENDING_LINES:
            self.flush()

    def flush(self) -> None:
        """Write what is queued; never raises (it runs on the flush thread and in emit)."""
        with self._write_lock:
            pending = self._pending
            # deque.popleft is atomic: lines queued meanwhile stay for the next write,
            # and order is kept, because only the holder of the lock drains.
            lines = [pending.popleft() for _ in range(len(pending))]
            stream = self.stream
            try:
                if lines:
                    stream.write("\n".join(lines) + "\n")
                # Not StreamHandler.flush(): it takes the handler's lock, which emit()
                # holds when it calls flush() on a full queue.
                if stream is not None and hasattr(stream, "flush"):
                    stream.flush()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    sys.stderr.write(
                        f"--- logging error: could not write {len(lines)} log lines: {exc!r}\n"
                    )

    def close(self) -> None:
        """Write what is queued and stop the flush thread (logging.shutdown calls this)."""
        self.flush()
        self._flusher_pid = None
        self._stop.set()
        self._wake.set()
        super().close()


def flush_logs() -> None:
    """Write every queued log line now (before a hard exit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def start_background_flush() -> None:
    """Switch this process's stdout log handler to batched writes (gunicorn workers)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _StdoutHandler):
            handler.start_background_flush()


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
