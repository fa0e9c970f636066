"""gunicorn settings and hooks of both services.

Usage: gunicorn -c python:obs_telemetry.gunicorn_conf frontend.wsgi:app

Reads: PORT (5000), BIND_HOST (0.0.0.0), GUNICORN_THREADS (8), LOG_LEVEL (info), and
the OTEL_* variables through the tracer provider it builds after fork.
A --bind on the command line overrides PORT and BIND_HOST.

One worker process with threads, on purpose: Prometheus metrics then live in one
process, so exemplars, gauges and the summary are exact without prometheus_client's
multiprocess mode (which drops exemplars). Scale out with replicas, not workers.
"""

from __future__ import annotations

import importlib
import os
import tempfile

from gunicorn.glogging import Logger

from obs_telemetry.logs import flush_logs, gunicorn_logconfig, start_background_flush
from obs_telemetry.ops import CRASH_MARKER_DIR_ENV, crash_marker
from obs_telemetry.settings import env_int, env_str
from obs_telemetry.tracing import install_global_tracer_provider, shutdown_global_tracer_provider

_port = env_int(os.environ, "PORT", 5000, minimum=1, maximum=65535)
bind = f"{env_str(os.environ, 'BIND_HOST', '0.0.0.0')}:{_port}"
workers = 1
worker_class = "gthread"
threads = env_int(os.environ, "GUNICORN_THREADS", 8, minimum=1, maximum=256)
# Below this, a request still running is killed; /slow caps its sleeps well under it.
timeout = 30
# SIGTERM: stop accepting and finish in-flight requests, then flush spans (at most
# tracing.SHUTDOWN_BUDGET_S); the master kills a worker still busy after 25 s, before
# Kubernetes' SIGKILL at 30 s.
graceful_timeout = 25
keepalive = 5
accesslog = None
logconfig_dict = gunicorn_logconfig(env_str(os.environ, "LOG_LEVEL", "info"))


class AppAccessLogger(Logger):
    """gunicorn's logger without its access line: the app writes one per request.

    gunicorn.access is silenced in logconfig_dict, but with a logconfig_dict set gunicorn
    still builds every request's access-log atoms before the logger drops the line:
    measured at 3-8 % of a worker's CPU under load (docs/benchmarks.md).
    """

    def access(self, resp, req, environ, request_time) -> None:
        return


logger_class = AppAccessLogger
# The app is loaded in the worker, after fork, so that nothing with threads (the span
# batch exporter, the HTTP client pool) is created in the master.
preload_app = False


def post_fork(server, worker):
    os.environ[CRASH_MARKER_DIR_ENV] = tempfile.gettempdir()
    # Log lines leave the worker in batches (obs_telemetry.logs._StdoutHandler says
    # why); the master keeps writing line by line, so nothing waits before its exits.
    start_background_flush()
    # The service package ("frontend" in "frontend.wsgi:app") names its defaults;
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still override them.
    package = importlib.import_module(server.app.app_uri.split(":")[0].split(".")[0])
    install_global_tracer_provider(package.SERVICE_NAME, package.__version__)


def worker_int(worker):
    # Ctrl-C in `make services`: flush spans before the worker goes.
    shutdown_global_tracer_provider()


def worker_exit(server, worker):
    shutdown_global_tracer_provider()
    flush_logs()


def child_exit(server, worker):
    marker = crash_marker(tempfile.gettempdir(), worker.pid)
    if os.path.exists(marker):
        os.unlink(marker)
        server.log.critical(
            "worker %s crashed on purpose (/crash); exiting with status 1", worker.pid
        )
        # A hard exit of the master, as a real crash would be: the supervisor (kubelet,
        # supervisord) sees a non-zero exit and restarts the service.
        os._exit(1)
