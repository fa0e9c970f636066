"""Shared fixtures: fresh metrics registries and in-memory span exporters per test.

Reads no environment variables itself (the e2e fixtures read CI).
"""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

import backend
import frontend

# The service images, built once per session for the image and real-node tests.
pytest_plugins = ["tests.support.image_fixtures"]

# Deterministic chaos for unit tests: individual tests turn it back on.
QUIET = {
    "TESTING": True,
    "HEALTH_FAILURE_RATE": 0.0,
    "SLOW_TIMEOUT_RATE": 0.0,
}


@pytest.fixture
def span_exporter():
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter):
    provider = TracerProvider()
    # Synchronous export: spans are in the exporter as soon as the request returns.
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def backend_app(tracer_provider):
    # Its own registry: `registry` belongs to the frontend when a test uses both apps.
    return backend.create_app(
        dict(QUIET), registry=CollectorRegistry(), tracer_provider=tracer_provider
    )


@pytest.fixture
def backend_client(backend_app):
    return backend_app.test_client()


@pytest.fixture
def backend_server(tracer_provider):
    """A real backend over HTTP on 127.0.0.1, sharing the test's tracer provider."""
    app = backend.create_app(
        dict(QUIET), registry=CollectorRegistry(), tracer_provider=tracer_provider
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # serve_forever polls for shutdown every poll_interval (0.5 s by default): every
    # test using this fixture paid it on teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.app = app
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def frontend_app(backend_server, registry, tracer_provider):
    config = dict(QUIET, BACKEND_URL=backend_server.url)
    app = frontend.create_app(config, registry=registry, tracer_provider=tracer_provider)
    yield app
    app.extensions["backend_client"].close()


@pytest.fixture
def client(frontend_app):
    return frontend_app.test_client()
