"""Frontend service: the user-facing API, which calls the backend for its data.

Reads (see settings.py and docs/services.md): BACKEND_URL, BACKEND_CONNECT_TIMEOUT,
BACKEND_READ_TIMEOUT, the shared settings of obs_telemetry and the OTEL_* variables.
Built by the app factory create_app, served by gunicorn.
"""

from __future__ import annotations

from flask import Flask

from obs_telemetry import Telemetry
from obs_telemetry.ops import bp as ops_bp

from .backend_client import BackendClient
from .routes import bp
from .settings import load_settings

SERVICE_NAME = "frontend"
__version__ = "1.0.0"


def create_app(config: dict | None = None, *, registry=None, tracer_provider=None) -> Flask:
    """App factory. `config` overrides the environment; tests inject the telemetry sinks."""
    # No static folder: the services serve none, and its route would be one more URL
    # pattern for scanners to hit.
    app = Flask(__name__, static_folder=None)
    app.config.update(SERVICE_NAME=SERVICE_NAME, SERVICE_VERSION=__version__)
    app.config.update(load_settings())
    if config:
        app.config.update(config)
    Telemetry(app, registry=registry, tracer_provider=tracer_provider)
    BackendClient(app)
    app.register_blueprint(ops_bp)
    app.register_blueprint(bp)
    return app
