"""The real service images, built from services/*/Dockerfile and run with podman.

Each container runs as Kubernetes will run it (k8s/ asks for the same): read-only root
filesystem with a writable /tmp only, the image's numeric non-root user, every
capability dropped, no privilege escalation. Checks come from the kernel's view of the
process (/proc), not from podman's configuration. Host networking, so that each
container serves on a free 127.0.0.1 port and reaches the test's OTLP receiver.
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from obs_telemetry import gunicorn_conf
from tests.support import podman as podman_support
from tests.support.image_fixtures import SERVICES
from tests.support.metrics import value
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.polling import free_port, poll_until

pytestmark = pytest.mark.images

# --read-only-tmpfs=false: podman would otherwise also make /var/tmp and /run writable,
# hiding a write that fails under Kubernetes, where only the /tmp emptyDir is.
HARDENED = [
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs",
    "/tmp:rw,mode=1777,size=16m",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
]
NETWORK = ["--network=host"]
QUIET = {"HEALTH_FAILURE_RATE": "0", "SLOW_TIMEOUT_RATE": "0", "GUNICORN_THREADS": "4"}


class RunningService:
    def __init__(self, container: podman_support.Container, port: int) -> None:
        self.container = container
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 60) -> None:
        def ready():
            self.container.alive()
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200

        poll_until(
            ready,
            f"container {self.container.name} to answer /readyz",
            timeout,
            on_timeout=self.container.tail,
        )

    def stdout_json(self) -> list[dict]:
        stdout, _ = self.container.logs()
        lines = []
        for raw in stdout.splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                raise AssertionError(
                    f"{self.container.name} wrote a non-JSON line to stdout: {raw!r}"
                ) from None
        return lines


def run_service(podman, images, run_id, service, options=HARDENED, **env) -> RunningService:
    port = free_port()
    name = f"obs-stack-test-{run_id}-{service}-{secrets.token_hex(3)}"
    container_env = {
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "OTEL_TRACES_EXPORTER": "none",
        **QUIET,
        **env,
    }
    container = podman_support.start(
        podman, name, images[service].tag, NETWORK + list(options), container_env
    )
    return RunningService(container, port)


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def services(podman, images, run_id, receiver):
    """Both services, hardened, the frontend calling the backend, spans to the receiver."""
    tracing = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    running = {}
    try:
        running["backend"] = run_service(podman, images, run_id, "backend", **tracing)
        running["frontend"] = run_service(
            podman, images, run_id, "frontend", BACKEND_URL=running["backend"].url, **tracing
        )
        for service in running.values():
            service.wait_ready()
        yield running
    finally:
        for service in running.values():
            service.container.remove()


@pytest.mark.parametrize("service", SERVICES)
def test_image_user_is_numeric_and_not_root(images, service):
    assert podman_support.user_problem(images[service].user) is None


@pytest.mark.parametrize(
    ("user", "problem"),
    [
        ("app", "not numeric"),
        ("", "not numeric"),
        ("0", "is root"),
        ("0:10001", "is root"),
        ("10001:0", "root group"),
    ],
)
def test_user_check_rejects_what_runAsNonRoot_cannot_verify(user, problem):
    assert problem in (podman_support.user_problem(user) or "")


@pytest.mark.parametrize("service", SERVICES)
def test_container_runs_read_only_non_root_without_capabilities(services, images, service):
    security = podman_support.process_security(services[service].container.pid())
    expected_uid = int(images[service].user.split(":")[0])
    assert podman_support.hardening_problems(security, expected_uid) == []


def test_hardening_check_fails_for_a_container_run_without_the_options(podman, images, run_id):
    # The same check must see through a container run the default way, as root.
    service = run_service(podman, images, run_id, "backend", options=["--user", "0"])
    try:
        service.wait_ready()
        security = podman_support.process_security(service.container.pid())
        problems = " | ".join(podman_support.hardening_problems(security, 10001))
    finally:
        service.container.remove()
    for expected in ("uid 0", "capabilities", "no_new_privs", "writable"):
        assert expected in problems


@pytest.mark.parametrize("service", SERVICES)
def test_livez_and_metrics_answer(services, service):
    running = services[service]
    livez = httpx.get(f"{running.url}/livez", timeout=5)
    assert livez.status_code == 200
    assert livez.json() == {"status": "alive"}
    labels = dict(endpoint="/stats", method="GET", status="200")
    before = value(
        httpx.get(f"{running.url}/metrics", timeout=5).text, "flask_requests_total", **labels
    )
    assert httpx.get(f"{running.url}/stats", timeout=5).status_code == 200
    metrics = httpx.get(f"{running.url}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert value(metrics.text, "flask_requests_total", **labels) == before + 1


@pytest.mark.parametrize("service", SERVICES)
def test_logs_are_ecs_json_lines_on_stdout(services, service):
    running = services[service]
    trace_id = secrets.token_hex(16)
    header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    assert httpx.get(f"{running.url}/stats", headers={"traceparent": header}).status_code == 200

    def access_line():
        return next(
            (line for line in running.stdout_json() if line.get("trace.id") == trace_id), None
        )

    line = poll_until(
        access_line,
        f"a log line of {service} with trace.id {trace_id}",
        10,
        on_timeout=running.container.tail,
    )
    assert line["service.name"] == service
    assert line["url.path"] == "/stats"
    assert line["http.response.status_code"] == 200
    assert line["log.level"] == "info"
    assert line["@timestamp"].endswith("Z")


def test_frontend_image_calls_backend_image_in_one_trace(services, receiver):
    trace_id = secrets.token_hex(16)
    header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    response = httpx.get(
        f"{services['frontend'].url}/items/2", headers={"traceparent": header}, timeout=10
    )
    assert response.status_code == 200, response.text

    def both_services():
        seen = {s.service for s in receiver.snapshot() if s.trace_id == trace_id}
        return seen == {"frontend", "backend"}

    poll_until(both_services, f"spans of trace {trace_id} from both containers", 15)


@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_finishes_in_flight_requests_and_stops_within_the_grace_period(
    podman, images, run_id, service, request
):
    # The frontend's /slow waits on the backend: give it one (in this test process).
    env = (
        {"BACKEND_URL": request.getfixturevalue("backend_server").url}
        if service == "frontend"
        else {}
    )
    running = run_service(podman, images, run_id, service, **env)
    try:
        running.wait_ready()
        path = "/slow?delay=2"
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.get, f"{running.url}{path}", timeout=30)
            poll_until(
                lambda: (
                    value(httpx.get(f"{running.url}/metrics", timeout=5).text, "active_users") >= 1
                ),
                f"the {path} request to be in flight in {service}",
                10,
            )
            start = time.monotonic()
            podman.run("kill", "--signal", "TERM", running.container.name)
            poll_until(
                lambda: not running.container.running(),
                f"{service} to exit after SIGTERM",
                gunicorn_conf.graceful_timeout + 10,
                interval=0.1,
                on_timeout=running.container.tail,
            )
            stopped_after = time.monotonic() - start
            response = in_flight.result(timeout=5)
        exit_code = int(running.container.state("ExitCode"))
    finally:
        running.container.remove()
    print(f"{service}: stopped {stopped_after:.1f} s after SIGTERM")
    assert response.status_code == 200, "the request in flight at SIGTERM was not finished"
    assert exit_code == 0, f"{service} exited with {exit_code} after SIGTERM"
    assert stopped_after < gunicorn_conf.graceful_timeout
