"""Hostile input against the real gunicorn services: bad trace headers, oversized
headers and bodies, bad query parameters, non-UTF-8 and overlong paths, odd methods.

The promise: a 4xx (or, for trace headers, the W3C rule: ignore and start a new trace),
never a 5xx, never a stack trace in the answer or in the logs. Raw sockets send the
bytes that HTTP client libraries refuse to build.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.support.polling import free_port
from tests.support.services import start_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("malformed")
    env = {"OTEL_TRACES_EXPORTER": "none", "SLOW_MAX_DELAY_SECONDS": "0.5"}
    backend = start_service("backend", "backend", free_port(), log_dir, **env)
    frontend = start_service(
        "frontend", "frontend", free_port(), log_dir, BACKEND_URL=backend.url, **env
    )
    try:
        backend.wait_http(f"{backend.url}/readyz")
        frontend.wait_http(f"{frontend.url}/readyz")
        yield {"frontend": frontend, "backend": backend}
    finally:
        frontend.stop()
        backend.stop()
        for process in (frontend, backend):
            for raw in process.log_path.read_text().splitlines():
                line = json.loads(raw)
                assert "error.stack_trace" not in line, f"{process.name} logged a traceback: {raw}"
                assert line.get("error.type") != "internal_error", raw


def raw_request(url: str, request: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data


def assert_clean(status: int, body: bytes | str, what: str) -> None:
    text = body if isinstance(body, str) else body.decode("latin-1")
    assert status < 500, f"{what}: {status} {text[:300]}"
    assert "Traceback" not in text, f"{what}: {text[:300]}"


SERVICES = ["frontend", "backend"]


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-zzzz-zzzz-01"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},
        {"traceparent": "ff-" + "a" * 32 + "-" + "b" * 16 + "-01"},
        {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01-extra"},
        {"traceparent": "x" * 4000},
        {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": "=,=,==" * 100},
        {"tracestate": "k" * 4000},
    ],
    ids=[
        "garbage",
        "zero-ids",
        "version-ff",
        "extra-field",
        "long",
        "bad-tracestate",
        "state-only",
    ],
)
def test_bad_trace_headers_are_ignored(services, service, headers):
    process = services[service]
    response = httpx.get(f"{process.url}/livez", headers=headers, timeout=10)
    assert response.status_code == 200
    response = httpx.get(f"{process.url}/stats", headers=headers, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("service", SERVICES)
def test_oversized_headers_and_too_many_headers_are_4xx(services, service):
    url = services[service].url
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    status, body = raw_request(url, big)
    assert 400 <= status < 500
    assert_clean(status, body, "oversized header")
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200))
    status, body = raw_request(url, many + b"\r\n")
    assert 400 <= status < 500
    assert_clean(status, body, "200 headers")


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "target",
    [b"/%ff%fe%fd", b"/items/%c3%28", b"/\xff\xfe", b"/" + b"a" * 3000, b"/" + b"%00" * 100],
    ids=["percent-non-utf8", "bad-utf8-sequence", "raw-non-utf8", "long-path", "nul-bytes"],
)
def test_bad_paths_are_4xx(services, service, target):
    status, body = raw_request(
        services[service].url,
        b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert 400 <= status < 500, (status, body[:200])
    assert_clean(status, body, repr(target))


@pytest.mark.parametrize("service", SERVICES)
def test_overlong_request_line_is_4xx(services, service):
    # Just over gunicorn's limit_request_line (4094): far longer lines are refused the
    # same way, but the close with unread bytes resets the socket before the 400 is read.
    target = b"/" + b"a" * 4200
    status, body = raw_request(
        services[service].url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert 400 <= status < 500
    assert_clean(status, body, "10 kB request line")


BAD_QUERIES = {
    "frontend": [
        "/error?type=nope",
        "/slow?delay=abc",
        "/slow?delay=-1",
        "/slow?delay=nan",
        "/slow?delay=inf",
        "/slow?delay=1e309",
        "/slow?delay=99",
        "/items/abc",
        "/items/-1",
        "/items/99999999999999999999999",
    ],
    "backend": [
        "/error?type=nope",
        "/slow?delay=abc",
        "/slow?delay=-1",
        "/slow?delay=nan",
        "/slow?delay=1e309",
        "/slow?delay=99",
        "/api/items/abc",
        "/api/items/0",
        "/api/items/99999999999999999999999",
    ],
}


@pytest.mark.parametrize("service", SERVICES)
def test_bad_query_parameters_are_json_4xx(services, service):
    url = services[service].url
    for path in BAD_QUERIES[service]:
        response = httpx.get(f"{url}{path}", timeout=10)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert {"error", "message"} <= response.json().keys(), path
        assert_clean(response.status_code, response.text, path)


ORDER_PATH = {"frontend": "/orders", "backend": "/api/orders"}


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"x" * (100 * 1024), "application/json", 413),
        (b"{not json", "application/json", 400),
        (b"\xff\xfe\x00", "application/json", 400),
        (b"[" * 100000, "application/json", 413),
        (b"[" * 50000 + b"]" * 50000, "application/json", 413),
        (b"[" * 3000 + b"]" * 3000, "application/json", 400),
        (b'{"item_id": 1, "quantity": 1}', "text/plain", 400),
        (b'{"item_id": true, "quantity": 1e400}', "application/json", 400),
        (b'"just a string"', "application/json", 400),
    ],
    ids=[
        "100k",
        "broken",
        "binary",
        "deep-open",
        "deep-100k",
        "deep",
        "wrong-type",
        "types",
        "str",
    ],
)
def test_bad_bodies_are_4xx(services, service, body, content_type, expected):
    response = httpx.post(
        f"{services[service].url}{ORDER_PATH[service]}",
        content=body,
        headers={"Content-Type": content_type},
        timeout=10,
    )
    assert response.status_code == expected, response.text[:300]
    assert {"error", "message"} <= response.json().keys()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "BREW", "PROPFIND"])
def test_unexpected_methods_are_405_or_404(services, service, method):
    url = services[service].url
    for path in ("/", "/stats", "/health", "/metrics", "/error", "/slow", ORDER_PATH[service]):
        response = httpx.request(method, f"{url}{path}", timeout=10)
        assert response.status_code == 405, (method, path, response.status_code)
        assert response.json()["error"] == "method_not_allowed"
    response = httpx.request(method, f"{url}/no/such/path", timeout=10)
    assert response.status_code == 404
