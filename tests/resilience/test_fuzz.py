"""Property-based fuzzing of both services from their OpenAPI descriptions (hypothesis).

Each example picks an operation of services/<name>/openapi.yaml and sends it with
generated path parameters, query strings, JSON or raw bodies, traceparent/tracestate
headers and sometimes another method. The properties: no 5xx outside the chaos
endpoints (tag `chaos`, whose 5xx are their purpose), every status is one the spec
documents for that operation, and every error is a JSON {error, message} without a
stack trace. Runs in-process (Flask test clients; the frontend calls a real backend
over HTTP), bounded by max_examples.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.resilience.openapi import load_spec

# Chaos switched to deterministic and fast: no random failures, sleeps of at most 10 ms.
FUZZ_CONFIG = {"HEALTH_FAILURE_RATE": 0.0, "SLOW_TIMEOUT_RATE": 0.0, "SLOW_MAX_DELAY_SECONDS": 0.01}
ROUTING_STATUSES = {"404", "405"}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "get"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
order_like = st.fixed_dictionaries(
    {},
    optional={
        "item_id": st.integers(-3, 8) | json_values,
        "quantity": st.integers(-5, 120) | json_values,
    },
)
text_param = st.text(max_size=30) | st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,3})?([eE][0-9]{1,3})?")
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


def operations(service: str) -> list[dict]:
    spec = load_spec(service)
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            found.append(
                {
                    "path": path,
                    "method": method.upper(),
                    "params": operation.get("parameters", []),
                    "body": "requestBody" in operation,
                    "statuses": set(operation["responses"]) | ROUTING_STATUSES,
                    "chaos": "chaos" in operation.get("tags", []),
                }
            )
    return found


@st.composite
def requests(draw, service: str):
    operation = draw(st.sampled_from(operations(service)))
    path = operation["path"]
    query = {}
    for param in operation["params"]:
        if param["in"] == "path":
            value = draw(st.integers(-(10**20), 10**20) | st.text(min_size=1, max_size=20))
            path = path.replace("{" + param["name"] + "}", quote(str(value), safe=""))
        elif draw(st.booleans()):
            query[param["name"]] = draw(text_param)
    query.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), text_param, max_size=2)))
    method = operation["method"] if draw(st.integers(0, 4)) else draw(st.sampled_from(METHODS))
    headers = {}
    if draw(st.booleans()):
        headers["traceparent"] = draw(
            header_text | st.just("00-" + "0" * 32 + "-" + "0" * 16 + "-01")
        )
    if draw(st.booleans()):
        headers["tracestate"] = draw(header_text)
    body = None
    if operation["body"] or draw(st.integers(0, 5)) == 0:
        kind = draw(st.sampled_from(["order", "json", "raw"]))
        if kind == "raw":
            body = draw(st.binary(max_size=200))
            headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain"]))
        else:
            value = draw(order_like if kind == "order" else json_values)
            body = json.dumps(value).encode()
            headers["Content-Type"] = "application/json"
    return operation, method, path, query, headers, body


def check(client, request) -> None:
    operation, method, path, query, headers, body = request
    response = client.open(path, method=method, query_string=query, headers=headers, data=body)
    text = response.get_data(as_text=True)
    where = f"{method} {path} {query} {headers} {body!r} -> {response.status_code}: {text[:300]}"
    assert "Traceback" not in text, where
    if not operation["chaos"]:
        assert response.status_code < 500, where
    # Methods are case-insensitive to the router, and Flask answers HEAD with the GET
    # view (body dropped), chaos included.
    routed = method.upper()
    if routed == operation["method"] or (routed, operation["method"]) == ("HEAD", "GET"):
        assert str(response.status_code) in operation["statuses"], where
    else:
        assert response.status_code < 500, where
    if response.status_code >= 400 and method != "HEAD":
        payload = response.get_json(silent=True)
        assert isinstance(payload, dict) and {"error", "message"} <= payload.keys(), where


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch):
    # /slow without ?delay sleeps 0.1-1 s by design; the properties here are about status
    # codes and bodies, so the sleep is skipped to keep hundreds of examples fast.
    import backend.routes

    monkeypatch.setattr(backend.routes, "time", SimpleNamespace(sleep=lambda _seconds: None))


@pytest.fixture
def fuzz_backend(backend_app):
    backend_app.config.update(FUZZ_CONFIG)
    return backend_app.test_client()


@pytest.fixture
def fuzz_frontend(frontend_app, backend_server):
    frontend_app.config.update(FUZZ_CONFIG)
    backend_server.app.config.update(FUZZ_CONFIG)
    return frontend_app.test_client()


@FUZZ
@given(request=requests("backend"))
def test_backend_survives_generated_requests(fuzz_backend, request):
    check(fuzz_backend, request)


@FUZZ
@given(request=requests("frontend"))
def test_frontend_survives_generated_requests(fuzz_frontend, request):
    check(fuzz_frontend, request)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    # One leading slash only: Werkzeug's test client reads "//x/..." as a URL whose host
    # is x (a server would see the path), and then refuses long or odd host names.
    # Slashes elsewhere, doubled ones included, stay.
    path=st.text(min_size=1, max_size=60).map(lambda t: "/" + quote(t, safe="/").lstrip("/")),
    method=st.sampled_from(METHODS),
)
def test_unknown_paths_get_a_json_404_or_405(backend_client, path, method):
    response = backend_client.open(path, method=method)
    assert response.status_code < 500, (method, path, response.status_code)
    if response.status_code >= 400 and method != "HEAD":
        assert {"error", "message"} <= response.get_json().keys()
