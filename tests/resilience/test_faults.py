"""Faults under load, against real gunicorn processes: an unreachable or black-holed
OTLP endpoint, a backend that is down or slow, SIGTERM in the middle of traffic.

Every test asserts behaviour (status codes, spans received, log fields, metric values,
exit codes), never timings beyond the limits the services promise (for example the
30 s Kubernetes grace period).
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from obs_tools.common.blackhole import BlackHole

from tests.support.metrics import value
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.polling import free_port, poll_until
from tests.support.services import start_service

pytestmark = pytest.mark.integration

STATUS_ERROR = 2
SPAN_KIND_SERVER = 2


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def log_lines(process) -> list[dict]:
    return [json.loads(raw) for raw in process.log_path.read_text().splitlines() if raw.strip()]


@pytest.fixture(params=["refused", "blackhole"])
def dead_otlp(request):
    if request.param == "refused":
        yield f"http://127.0.0.1:{free_port()}"
        return
    hole = BlackHole(drain=False)
    try:
        yield hole.url
    finally:
        hole.close()


def run_load(url: str, count: int, workers: int = 8, path: str = "/items") -> list:
    """`count` GETs from `workers` threads; each result is a status code or an exception."""

    def one(_):
        try:
            return httpx.get(f"{url}{path}", timeout=15).status_code
        except httpx.HTTPError as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def test_dead_otlp_endpoint_under_load_fails_no_request_and_bounds_the_queue(tmp_path, dead_otlp):
    queue = 64
    env = dict(
        OTEL_EXPORTER_OTLP_ENDPOINT=dead_otlp,
        OTEL_BSP_MAX_QUEUE_SIZE=str(queue),
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="16",
        OTEL_EXPORTER_OTLP_TIMEOUT="2000",
    )
    backend = start_service("backend", "backend", free_port(), tmp_path, **env)
    frontend = start_service(
        "frontend", "frontend", free_port(), tmp_path, BACKEND_URL=backend.url, **env
    )
    try:
        backend.wait_http(f"{backend.url}/readyz")
        frontend.wait_http(f"{frontend.url}/readyz")
        results = run_load(frontend.url, 400)
        failures = [r for r in results if r != 200]
        assert failures == [], f"{len(failures)} failed, e.g. {failures[:3]}"
        # 400 requests make 800 frontend spans, far more than the queue holds while the
        # exporter is stuck: the processor must have dropped spans instead of growing.
        assert "Queue full, dropping" in frontend.log_path.read_text(), frontend.tail()
        started = time.monotonic()
        for process in (frontend, backend):
            process.signal(signal.SIGTERM)
        for process in (frontend, backend):
            assert process.wait(timeout=40) == 0, process.describe_failure()
        # The span flush is capped (tracing.SHUTDOWN_BUDGET_S): gone well before the
        # 30 s after which Kubernetes kills.
        assert time.monotonic() - started < 30
    finally:
        frontend.stop()
        backend.stop()


@pytest.fixture
def receiver():
    with OtlpReceiver() as running:
        yield running


def test_backend_down_gives_a_json_502_logged_counted_and_probes_stay_ok(tmp_path, receiver):
    frontend = start_service(
        "frontend",
        "frontend",
        free_port(),
        tmp_path,
        BACKEND_URL=f"http://127.0.0.1:{free_port()}",
        BACKEND_CONNECT_TIMEOUT="0.5",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
    )
    try:
        frontend.wait_http(f"{frontend.url}/readyz")
        trace_id, header = traceparent()
        response = httpx.get(f"{frontend.url}/items", headers={"traceparent": header}, timeout=10)
        assert response.status_code == 502
        assert response.json()["error"] == "backend_unavailable"
        metrics = httpx.get(f"{frontend.url}/metrics").text
        assert value(metrics, "flask_errors_total", error_type="backend_unavailable") == 1
        assert httpx.get(f"{frontend.url}/livez").status_code == 200
        assert httpx.get(f"{frontend.url}/readyz").status_code == 200

        def logged():
            return [
                line
                for line in log_lines(frontend)
                if line.get("trace.id") == trace_id and line.get("error.type")
            ]

        lines = poll_until(logged, "the backend_unavailable log line with its trace.id", 10)
        assert {line["error.type"] for line in lines} == {"backend_unavailable"}
    finally:
        frontend.stop()


def test_slow_backend_hits_the_frontend_timeout_504_in_span_and_metrics(tmp_path, receiver):
    # The backend's /slow "times out" on every call after 3 s; the frontend gives up
    # after its 1 s read timeout and must answer 504 itself.
    backend = start_service(
        "backend",
        "backend",
        free_port(),
        tmp_path,
        SLOW_TIMEOUT_RATE="1",
        SLOW_TIMEOUT_SECONDS="3",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
    )
    frontend = start_service(
        "frontend",
        "frontend",
        free_port(),
        tmp_path,
        BACKEND_URL=backend.url,
        BACKEND_READ_TIMEOUT="1",
        SLOW_MAX_DELAY_SECONDS="0.5",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
    )
    try:
        backend.wait_http(f"{backend.url}/readyz")
        frontend.wait_http(f"{frontend.url}/readyz")
        trace_id, header = traceparent()
        response = httpx.get(f"{frontend.url}/slow", headers={"traceparent": header}, timeout=10)
        assert response.status_code == 504
        assert response.json()["error"] == "timeout_error"
        assert "read timeout" in response.json()["message"]

        def server_span():
            spans = [
                s
                for s in receiver.snapshot()
                if s.trace_id == trace_id and s.service == "frontend" and s.kind == SPAN_KIND_SERVER
            ]
            return spans[0] if spans else None

        span = poll_until(server_span, "the frontend's /slow span", 15)
        assert span.status_code == STATUS_ERROR
        assert span.attributes["obs_telemetry.error.type"] == "timeout_error"
        assert span.attributes["http.status_code"] == 504
        metrics = httpx.get(f"{frontend.url}/metrics").text
        assert value(metrics, "flask_errors_total", error_type="timeout_error") == 1
        labels = dict(endpoint="/slow", method="GET", status="504")
        assert value(metrics, "flask_requests_total", **labels) == 1
    finally:
        frontend.stop()
        backend.stop()


def test_sigterm_during_load_fails_no_in_flight_request_and_flushes_their_spans(tmp_path, receiver):
    env = dict(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="5000")
    backend = start_service("backend", "backend", free_port(), tmp_path, **env)
    frontend = start_service(
        "frontend", "frontend", free_port(), tmp_path, BACKEND_URL=backend.url, **env
    )
    results: list[tuple[str, object, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(path: str) -> None:
        # A fresh connection per request: a request is either accepted by gunicorn
        # (and must then succeed) or refused at connect once the listener is closed.
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not stop.is_set():
                trace_id, header = traceparent()
                try:
                    outcome = client.get(
                        f"{frontend.url}{path}", headers={"traceparent": header}, timeout=20
                    ).status_code
                except httpx.ConnectError:
                    return
                except httpx.HTTPError as exc:
                    outcome = exc
                with lock:
                    results.append((trace_id, outcome, path))

    try:
        backend.wait_http(f"{backend.url}/readyz")
        frontend.wait_http(f"{frontend.url}/readyz")
        threads = [threading.Thread(target=client_loop, args=("/items",)) for _ in range(6)]
        threads += [threading.Thread(target=client_loop, args=("/slow?delay=1",)) for _ in range(2)]
        for thread in threads:
            thread.start()
        poll_until(lambda: len(results) >= 30, "30 requests answered before SIGTERM", 30)
        poll_until(
            lambda: value(httpx.get(f"{frontend.url}/metrics").text, "active_users") >= 2,
            "/slow requests in flight",
            10,
            interval=0.05,
        )
        frontend.signal(signal.SIGTERM)
        assert frontend.wait(timeout=40) == 0, frontend.describe_failure()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        stop.set()
        frontend.stop()
        backend.stop()

    handled = {line["trace.id"] for line in log_lines(frontend) if "http.route" in line}
    # A request gunicorn had accepted (the app wrote its access line) must reach its
    # client as a success. A connection still in the kernel's backlog when the listener
    # closed is reset without an answer: never in flight, it may fail at transport level
    # only, never with an HTTP error.
    failed_in_flight = [(t, o) for t, o, _ in results if t in handled and o != 200]
    assert failed_in_flight == [], f"{len(failed_in_flight)} in-flight requests failed"
    not_accepted = [o for t, o, _ in results if t not in handled]
    assert all(isinstance(o, httpx.TransportError) for o in not_accepted), not_accepted
    slow_finished = [t for t, o, path in results if path.startswith("/slow") and o == 200]
    assert slow_finished, "no /slow request was in flight at SIGTERM: the test proved nothing"
    answered = {t for t, o, _ in results if o == 200}
    # The worker flushed its queue on the way out: every answered request's server span
    # reached the receiver, though the batch delay (5 s) had not come round.
    exported = {
        s.trace_id
        for s in receiver.snapshot()
        if s.service == "frontend" and s.kind == SPAN_KIND_SERVER
    }
    missing = answered - exported
    assert not missing, f"{len(missing)} of {len(answered)} finished requests lost their spans"
