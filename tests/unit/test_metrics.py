"""Metric names, types, labels and exemplars, through the backend app's test client."""

from __future__ import annotations

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from obs_telemetry import Telemetry
from tests.support.metrics import samples, value

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}

# The contract with the course's PromQL and the dashboards: name -> Prometheus type.
EXPECTED_FAMILIES = {
    "flask_requests": "counter",
    "flask_errors": "counter",
    "flask_error_rate": "gauge",
    "flask_uptime_seconds": "gauge",
    "flask_request_duration_seconds": "histogram",
    "active_users": "gauge",
    "request_latency_seconds": "summary",
    # Seed 002's app.py names (its Grafana step queries them).
    "http_requests": "counter",
    "request_duration_seconds": "histogram",
}
# Seed 000's name -> seed 002's name for the same measurement.
SEED_TWINS = {
    "flask_requests_total": "http_requests_total",
    "flask_request_duration_seconds_bucket": "request_duration_seconds_bucket",
    "flask_request_duration_seconds_count": "request_duration_seconds_count",
}


def scrape(client, headers=None) -> str:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_every_course_metric_is_exposed_with_its_type(backend_client):
    backend_client.get("/")
    families = {f.name: f.type for f in text_string_to_metric_families(scrape(backend_client))}
    for name, kind in EXPECTED_FAMILIES.items():
        assert families.get(name) == kind, f"{name}: expected {kind}, got {families.get(name)}"


@pytest.mark.parametrize(("seed_000", "seed_002"), SEED_TWINS.items())
def test_both_seeds_names_count_the_same_requests_with_the_same_labels(
    backend_client, seed_000, seed_002
):
    for path in ("/api/items/1", "/api/items/2", "/no/such/page", "/"):
        backend_client.get(path)
    backend_client.open("/", method="BREW")
    text = scrape(backend_client)
    assert samples(text, seed_000), f"no {seed_000} samples"
    assert samples(text, seed_002) == samples(text, seed_000)


def test_requests_are_labelled_by_route_template_not_raw_path(backend_client):
    for item_id in (1, 2, 3):
        assert backend_client.get(f"/api/items/{item_id}").status_code == 200
    text = scrape(backend_client)
    labels = dict(endpoint="/api/items/<int:item_id>", method="GET", status="200")
    assert value(text, "flask_requests_total", **labels) == 3
    assert not any(
        "/api/items/1" in dict(k)["endpoint"] for k in samples(text, "flask_requests_total")
    )


def test_unknown_paths_and_methods_collapse_to_one_label_value(backend_client):
    for path in ("/no/such/page", "/wp-admin", "/.env"):
        assert backend_client.get(path).status_code == 404
    backend_client.open("/", method="BREW")
    text = scrape(backend_client)
    assert (
        value(text, "flask_requests_total", endpoint="unmatched", method="GET", status="404") == 3
    )
    # 405 means no rule matched this method either.
    assert (
        value(text, "flask_requests_total", endpoint="unmatched", method="other", status="405") == 1
    )


def test_scrapes_and_probes_are_not_counted_as_traffic(backend_client):
    for path in ("/metrics", "/livez", "/readyz", "/metrics"):
        backend_client.get(path)
    endpoints = {
        dict(k)["endpoint"] for k in samples(scrape(backend_client), "flask_requests_total")
    }
    assert endpoints == set()


def test_errors_are_counted_by_type_and_error_rate_is_a_percentage(backend_client):
    backend_client.get("/")
    backend_client.get("/error?type=database_error")
    backend_client.get("/error?type=permission_error")
    backend_client.get("/")
    text = scrape(backend_client)
    assert value(text, "flask_errors_total", error_type="database_error") == 1
    assert value(text, "flask_errors_total", error_type="permission_error") == 1
    assert value(text, "flask_error_rate") == pytest.approx(50.0)
    stats = backend_client.get("/stats").get_json()
    # /stats reports the totals before its own request is counted.
    assert (stats["requests_total"], stats["errors_total"]) == (4, 2)
    assert stats["error_rate_percent"] == pytest.approx(50.0)
    assert stats["uptime_seconds"] >= 0


def test_duration_histogram_carries_trace_id_exemplars_in_openmetrics(
    backend_client, span_exporter
):
    backend_client.get("/api/items")
    trace_id = format(span_exporter.get_finished_spans()[-1].context.trace_id, "032x")
    response = backend_client.get("/metrics", headers=OPENMETRICS)
    assert response.content_type.startswith("application/openmetrics-text")
    lines = [
        line
        for line in response.get_data(as_text=True).splitlines()
        if line.startswith("flask_request_duration_seconds_bucket") and "/api/items" in line
    ]
    assert any(f'# {{trace_id="{trace_id}"}}' in line for line in lines), lines
    # The classic text format cannot carry exemplars; it must still parse cleanly.
    assert "trace_id" not in scrape(backend_client)


def test_unsampled_requests_carry_no_exemplar(registry):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from backend import create_app

    app = create_app(
        {"TESTING": True}, registry=registry, tracer_provider=TracerProvider(sampler=ALWAYS_OFF)
    )
    client = app.test_client()
    client.get("/api/items")
    text = client.get("/metrics", headers=OPENMETRICS).get_data(as_text=True)
    assert "trace_id" not in text
    assert 'flask_requests_total{endpoint="/api/items",method="GET",status="200"} 1.0' in text


def test_init_app_is_idempotent(tracer_provider):
    app = Flask("idempotent")
    app.config.update(TELEMETRY_CONFIGURE_LOGGING=False)
    registry = CollectorRegistry()
    extension = Telemetry(app, registry=registry, tracer_provider=tracer_provider)
    hooks = len(app.before_request_funcs[None]), len(app.after_request_funcs[None])
    extension.init_app(app)
    Telemetry(registry=registry, tracer_provider=tracer_provider).init_app(app)
    assert (len(app.before_request_funcs[None]), len(app.after_request_funcs[None])) == hooks


def test_active_users_gauge_returns_to_zero(backend_client):
    backend_client.get("/api/items")
    backend_client.get("/error?type=timeout_error")
    assert value(scrape(backend_client), "active_users") == 1  # the scrape itself
