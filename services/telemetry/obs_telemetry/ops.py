"""Operational endpoints every service exposes: /metrics, /stats, /health, /livez,
/readyz and /crash.

Reads, through the app config (see settings.py): HEALTH_FAILURE_RATE and
CHAOS_CRASH_ENABLED.

/health is the course's deliberately flaky endpoint, for dashboards and alerts to have
something to show. Kubernetes probes use /livez and /readyz, which are deterministic:
a probe on a random endpoint would restart healthy pods.
"""

from __future__ import annotations

import logging
import os
import random
import sys

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client.exposition import choose_encoder
from werkzeug.exceptions import NotFound

from .errors import AppError
from .extension import state_of
from .logs import flush_logs

log = logging.getLogger("obs_telemetry.events")

bp = Blueprint("ops", __name__)


# Set by gunicorn_conf.post_fork; absent when the app runs under another server.
CRASH_MARKER_DIR_ENV = "OBS_CRASH_MARKER_DIR"


def crash_marker(directory: str, worker_pid: int) -> str:
    """File a worker leaves before a deliberate crash, read by gunicorn's master."""
    return os.path.join(directory, f"obs-crash-{worker_pid}")


@bp.get("/metrics")
def metrics():
    # Prometheus asks for OpenMetrics when it can store exemplars; only that format
    # carries them, so the encoder follows the Accept header.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(state_of().registry), content_type=content_type)


@bp.get("/stats")
def stats():
    state = state_of()
    requests_total, errors_total = state.metrics.totals()
    return jsonify(
        service=state.service_name,
        uptime_seconds=round(state.metrics.uptime_seconds(), 3),
        requests_total=requests_total,
        errors_total=errors_total,
        error_rate_percent=round(100.0 * errors_total / requests_total, 2)
        if requests_total
        else 0.0,
    )


@bp.get("/health")
def health():
    rate = current_app.config["HEALTH_FAILURE_RATE"]
    if rate and random.random() < rate:
        raise AppError("health_check_failed", "simulated health check failure", 503)
    return jsonify(status="healthy", service=state_of().service_name)


@bp.get("/livez")
def livez():
    # Liveness only says "this process can still answer": never check a dependency here,
    # or a backend outage would make Kubernetes restart every healthy frontend.
    return jsonify(status="alive")


@bp.get("/readyz")
def readyz():
    state = state_of()
    if not state.ready:
        return jsonify(status="not ready"), 503
    return jsonify(status="ready")


@bp.route("/crash", methods=["GET", "POST"])
def crash():
    if not current_app.config["CHAOS_CRASH_ENABLED"]:
        # Same answer as any unknown path: a disabled chaos switch is not advertised.
        raise NotFound()
    log.critical("crash requested through /crash: exiting the process with status 1")
    flush_logs()
    sys.stdout.flush()
    # Under gunicorn only this worker would die and the master would quietly fork a
    # new one; the marker tells the master to exit too, as a real crash of the whole
    # container would (see gunicorn_conf.child_exit).
    marker_dir = os.environ.get(CRASH_MARKER_DIR_ENV)
    if marker_dir:
        with open(crash_marker(marker_dir, os.getpid()), "w"):
            pass
    os._exit(1)
