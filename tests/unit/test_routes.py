"""Behaviour of both services' routes, the backend through its test client and the
frontend against a real backend served on 127.0.0.1."""

from __future__ import annotations

import pytest

import backend
import frontend
from obs_telemetry import SIMULATED_ERRORS
from tests.conftest import QUIET
from tests.support.metrics import value
from tests.support.polling import free_port

SERVICES = ["frontend", "backend"]


@pytest.fixture
def service_client(request, client, backend_client):
    return {"frontend": client, "backend": backend_client}[request.param]


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
@pytest.mark.parametrize("path", ["/", "/health", "/stats", "/livez", "/readyz"])
def test_status_endpoints_answer_json(service_client, path):
    response = service_client.get(path)
    assert response.status_code == 200
    assert isinstance(response.get_json(), dict)


def test_frontend_index_is_backed_by_the_backend(client, backend_server):
    body = client.get("/").get_json()
    assert body["service"] == "frontend"
    assert body["backend"]["service"] == "backend"


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
def test_health_fails_at_the_configured_rate(service_client):
    service_client.application.config["HEALTH_FAILURE_RATE"] = 1.0
    response = service_client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["error"] == "health_check_failed"
    text = service_client.get("/metrics").get_data(as_text=True)
    assert value(text, "flask_errors_total", error_type="health_check_failed") == 1


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
@pytest.mark.parametrize("error_type", sorted(SIMULATED_ERRORS))
def test_error_returns_the_fitting_status(service_client, error_type):
    response = service_client.get(f"/error?type={error_type}")
    assert response.status_code == SIMULATED_ERRORS[error_type]
    assert response.get_json()["error"] == error_type


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
def test_random_error_is_one_of_the_four(service_client):
    seen = {service_client.get("/error").get_json()["error"] for _ in range(40)}
    assert seen <= set(SIMULATED_ERRORS)
    assert len(seen) >= 2


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
@pytest.mark.parametrize("delay", ["abc", "-1", "nan", "inf", "1e9", "26"])
def test_slow_rejects_bad_delays_with_400(service_client, delay):
    response = service_client.get(f"/slow?delay={delay}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
def test_slow_sleeps_the_requested_delay(service_client):
    response = service_client.get("/slow?delay=0.05")
    assert response.status_code == 200


def test_slow_times_out_at_the_configured_rate_through_the_frontend(client, backend_server):
    backend_server.app.config.update(SLOW_TIMEOUT_RATE=1.0, SLOW_TIMEOUT_SECONDS=0.01)
    response = client.get("/slow")
    assert response.status_code == 504
    assert response.get_json()["error"] == "timeout_error"


@pytest.mark.parametrize("service_client", SERVICES, indirect=True)
def test_crash_is_404_when_disabled(service_client):
    assert service_client.application.config["CHAOS_CRASH_ENABLED"] is False
    assert service_client.get("/crash").status_code == 404


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "[]",
        '{"item_id": 1}',
        '{"item_id": 1, "quantity": 0}',
        '{"item_id": 9, "quantity": 1}',
        '{"item_id": true, "quantity": 1}',
        '{"item_id": 1, "quantity": "2"}',
        "{bad json",
    ],
)
def test_orders_reject_bad_input_with_400(client, payload):
    response = client.post("/orders", data=payload, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"


def test_orders_are_created_through_the_backend(client):
    response = client.post("/orders", json={"item_id": 3, "quantity": 2})
    assert response.status_code == 201
    assert response.get_json()["total_cents"] == 9000


def test_unknown_item_is_404_on_both_services(client):
    response = client.get("/items/42")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_unreachable_backend_is_a_clean_502(registry, tracer_provider):
    app = frontend.create_app(
        dict(QUIET, BACKEND_URL=f"http://127.0.0.1:{free_port()}"),
        registry=registry,
        tracer_provider=tracer_provider,
    )
    response = app.test_client().get("/")
    assert response.status_code == 502
    assert response.get_json()["error"] == "backend_unavailable"
    # The frontend's own endpoints do not depend on the backend.
    assert app.test_client().get("/readyz").status_code == 200
    assert app.test_client().get("/livez").status_code == 200


def test_backend_read_timeout_is_a_clean_504(backend_server, registry, tracer_provider):
    app = frontend.create_app(
        dict(QUIET, BACKEND_URL=backend_server.url, BACKEND_READ_TIMEOUT=0.1),
        registry=registry,
        tracer_provider=tracer_provider,
    )
    response = app.test_client().get("/slow?delay=1")
    assert response.status_code == 504
    assert response.get_json()["error"] == "timeout_error"


def test_unknown_method_is_405_json(backend_client):
    response = backend_client.delete("/api/items")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"


def test_each_app_gets_its_own_registry_by_default(tracer_provider):
    # Two apps in one process must not collide on metric names.
    for _ in range(2):
        backend.create_app(dict(QUIET), tracer_provider=tracer_provider)


def test_deeply_nested_json_is_a_400_not_a_500(client):
    response = client.post("/orders", data="[" * 50_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"


def test_oversized_body_is_a_json_413(client):
    response = client.post("/orders", data="x" * (65 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
