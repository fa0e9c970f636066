"""Both services as real gunicorn processes, exporting to a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.support.metrics import value
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.polling import free_port, poll_until
from tests.support.services import start_service

pytestmark = pytest.mark.integration

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
STATUS_ERROR = 2


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def stack(receiver, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("services")
    backend = start_service(
        "backend", "backend", free_port(), log_dir, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint
    )
    frontend = start_service(
        "frontend",
        "frontend",
        free_port(),
        log_dir,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        BACKEND_URL=backend.url,
    )
    try:
        backend.wait_http(f"{backend.url}/readyz")
        frontend.wait_http(f"{frontend.url}/readyz")
        yield frontend, backend
    finally:
        frontend.stop()
        backend.stop()


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def spans_of(receiver, trace_id):
    return [s for s in receiver.snapshot() if s.trace_id == trace_id]


def json_log_lines(process) -> list[dict]:
    lines = []
    for raw in process.log_path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            raise AssertionError(f"{process.name} wrote a non-JSON line: {raw!r}") from None
    return lines


def test_one_request_is_one_trace_across_both_services(stack, receiver):
    frontend, _ = stack
    trace_id, header = traceparent()
    response = httpx.get(f"{frontend.url}/items/2", headers={"traceparent": header}, timeout=10)
    assert response.status_code == 200

    def complete():
        spans = spans_of(receiver, trace_id)
        return spans if {s.service for s in spans} == {"frontend", "backend"} else None

    spans = poll_until(complete, "spans of both services in the OTLP receiver", timeout=15)
    front_server = next(s for s in spans if s.service == "frontend" and s.kind == SPAN_KIND_SERVER)
    front_client = next(s for s in spans if s.service == "frontend" and s.kind == SPAN_KIND_CLIENT)
    back_server = next(s for s in spans if s.service == "backend" and s.kind == SPAN_KIND_SERVER)
    assert front_client.parent_span_id == front_server.span_id
    assert back_server.parent_span_id == front_client.span_id
    assert back_server.attributes["http.route"] == "/api/items/<int:item_id>"
    assert back_server.attributes["resource.deployment.environment"] == "test"
    assert back_server.attributes["resource.service.version"] == "1.0.0"


def test_error_spans_carry_status_and_exception(stack, receiver):
    frontend, _ = stack
    trace_id, header = traceparent()
    response = httpx.get(
        f"{frontend.url}/error?type=database_error", headers={"traceparent": header}, timeout=10
    )
    assert response.status_code == 500
    poll_until(
        lambda: [s for s in spans_of(receiver, trace_id) if s.kind == SPAN_KIND_SERVER][1:] or None,
        "both server spans of the /error trace",
        timeout=15,
    )
    servers = [s for s in spans_of(receiver, trace_id) if s.kind == SPAN_KIND_SERVER]
    assert {s.service for s in servers} == {"frontend", "backend"}
    for span in servers:
        assert span.status_code == STATUS_ERROR, span
        assert span.status_message.startswith("database_error")
        assert "exception" in span.events


def test_both_services_log_the_same_trace_id(stack):
    frontend, backend = stack
    trace_id, header = traceparent()
    httpx.get(f"{frontend.url}/items/3", headers={"traceparent": header}, timeout=10)

    def found():
        return all(
            any(line.get("trace.id") == trace_id for line in json_log_lines(process))
            for process in (frontend, backend)
        )

    poll_until(found, f"trace.id {trace_id} in both services' logs", timeout=10)


def test_metrics_use_route_templates(stack):
    frontend, backend = stack
    labels = dict(endpoint="/items/<int:item_id>", method="GET", status="200")
    before = value(httpx.get(f"{frontend.url}/metrics").text, "flask_requests_total", **labels)
    for item_id in (1, 4, 5):
        assert httpx.get(f"{frontend.url}/items/{item_id}", timeout=10).status_code == 200
    text = httpx.get(f"{frontend.url}/metrics").text
    assert value(text, "flask_requests_total", **labels) == before + 3
    assert 'endpoint="/items/1"' not in text
    back = httpx.get(f"{backend.url}/metrics").text
    assert (
        value(
            back,
            "flask_requests_total",
            endpoint="/api/items/<int:item_id>",
            method="GET",
            status="200",
        )
        >= 3
    )


def test_openmetrics_scrape_has_trace_exemplars(stack):
    frontend, _ = stack
    trace_id, header = traceparent()
    httpx.get(f"{frontend.url}/items", headers={"traceparent": header}, timeout=10)
    text = httpx.get(
        f"{frontend.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    ).text
    assert f'trace_id="{trace_id}"' in text


def test_malformed_traceparent_starts_a_new_trace_without_5xx(stack, receiver):
    frontend, _ = stack
    bad_trace_id = "f" * 32
    headers = (f"00-{bad_trace_id}-zzzz-01", "nonsense", f"01-{bad_trace_id}-{'b' * 16}")
    marker = secrets.token_hex(8)
    for header in headers:
        response = httpx.get(
            f"{frontend.url}/items?probe={marker}", headers={"traceparent": header}, timeout=10
        )
        assert response.status_code == 200

    def probe_spans():
        spans = [
            s
            for s in receiver.snapshot()
            if s.service == "frontend"
            and s.kind == SPAN_KIND_SERVER
            and marker in str(s.attributes.get("url.query", s.attributes.get("http.target", "")))
        ]
        return spans if len(spans) == len(headers) else None

    roots = poll_until(probe_spans, "frontend spans of the probe requests", timeout=15)
    assert all(s.parent_span_id == "" for s in roots)
    assert len({s.trace_id for s in roots}) == len(headers)
    assert bad_trace_id not in {s.trace_id for s in roots}


def test_crash_is_404_when_disabled(stack):
    frontend, backend = stack
    assert httpx.get(f"{frontend.url}/crash", timeout=5).status_code == 404
    assert httpx.get(f"{backend.url}/crash", timeout=5).status_code == 404
    assert backend.running()


def test_crash_ends_the_whole_process_when_enabled(tmp_path):
    crashing = start_service(
        "backend-crash",
        "backend",
        free_port(),
        tmp_path,
        CHAOS_CRASH_ENABLED="true",
        OTEL_SDK_DISABLED="true",
    )
    try:
        crashing.wait_http(f"{crashing.url}/readyz")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{crashing.url}/crash", timeout=5)
        code = crashing.wait(timeout=15)
        assert code == 1, crashing.describe_failure()
        # The worker's queued log lines are written before its hard exit.
        messages = [line["message"] for line in json_log_lines(crashing)]
        assert any(m.startswith("crash requested through /crash") for m in messages), (
            crashing.tail()
        )
    finally:
        crashing.stop()


@pytest.fixture(params=["refused", "blackhole"])
def unreachable_jaeger(request):
    """An OTLP endpoint that refuses connections, or one that accepts and never answers."""
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}"
        return
    # Listens but never accepts: connections queue in the kernel and requests hang
    # until the exporter's own timeout, the worst case for a blocking exporter.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(0)
        yield f"http://127.0.0.1:{sink.getsockname()[1]}"


def test_sigterm_finishes_in_flight_requests_with_jaeger_unreachable(tmp_path, unreachable_jaeger):
    service = start_service(
        "backend-sigterm",
        "backend",
        free_port(),
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=unreachable_jaeger,
    )
    try:
        service.wait_http(f"{service.url}/readyz")
        # An unreachable exporter must cost nothing visible to clients: no failure, and
        # no request anywhere near the exporter's 5 s timeout.
        for _ in range(20):
            response = httpx.get(f"{service.url}/api/items", timeout=10)
            assert response.status_code == 200
            assert response.elapsed.total_seconds() < 2.5, response.elapsed
        result = {}

        def slow_call():
            result["response"] = httpx.get(f"{service.url}/slow?delay=1.5", timeout=10)

        caller = threading.Thread(target=slow_call)
        caller.start()
        poll_until(
            lambda: value(httpx.get(f"{service.url}/metrics").text, "active_users") >= 2,
            "the /slow request to be in flight",
            timeout=5,
            interval=0.05,
        )
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        caller.join(timeout=15)
        assert result["response"].status_code == 200
        code = service.wait(timeout=40)
        elapsed = time.monotonic() - started
        assert code == 0, service.describe_failure()
        # Kubernetes sends SIGKILL 30 s after SIGTERM; we must be gone before.
        assert elapsed < 30, f"shutdown took {elapsed:.1f}s\n{service.tail()}"
    finally:
        service.stop()


def test_sigterm_writes_every_queued_log_line(tmp_path):
    # A worker queues its log lines and writes them in batches (obs_telemetry.logs);
    # the lines of every request answered before SIGTERM must still reach stdout.
    service = start_service("backend-logs", "backend", free_port(), tmp_path)
    try:
        service.wait_http(f"{service.url}/readyz")
        count, threads = 300, 4
        statuses = []

        def call() -> None:
            with httpx.Client(timeout=10) as client:
                statuses.extend(
                    client.get(f"{service.url}/api/items").status_code
                    for _ in range(count // threads)
                )

        callers = [threading.Thread(target=call) for _ in range(threads)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=60)
        assert statuses == [200] * count
        service.signal(signal.SIGTERM)
        assert service.wait(timeout=40) == 0, service.describe_failure()
        lines = json_log_lines(service)
        access = [line for line in lines if line.get("url.path") == "/api/items"]
        assert len(access) == count, f"{len(access)} of {count} access lines\n{service.tail()}"
        messages = [line["message"] for line in lines]
        assert any(m.startswith("Worker exiting") for m in messages), service.tail()
    finally:
        service.stop()
