"""The five traffic scripts, run briefly against the real services (gunicorn)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from obs_tools.common.paths import REPO

from tests.support.metrics import samples
from tests.support.polling import free_port, poll_until
from tests.support.services import start_service

pytestmark = pytest.mark.integration

SCRIPTS = REPO / "scripts"


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("traffic-services")
    backend = start_service(
        "backend",
        "backend",
        free_port(),
        log_dir,
        OTEL_SDK_DISABLED="true",
        HEALTH_FAILURE_RATE="0.2",
        SLOW_TIMEOUT_RATE="0.3",
        SLOW_TIMEOUT_SECONDS="0.2",
    )
    frontend = start_service(
        "frontend",
        "frontend",
        free_port(),
        log_dir,
        OTEL_SDK_DISABLED="true",
        BACKEND_URL=backend.url,
        HEALTH_FAILURE_RATE="0.2",
    )
    try:
        backend.wait_http(f"{backend.url}/readyz")
        frontend.wait_http(f"{frontend.url}/readyz")
        yield frontend
    finally:
        frontend.stop()
        backend.stop()


@pytest.fixture
def env(services, tmp_path):
    return dict(os.environ, TARGET_URL=services.url, OBS_RUN_DIR=str(tmp_path))


def script(name: str, *args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPTS / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def request_counts(frontend) -> dict[str, float]:
    """flask_requests_total of the frontend, summed by status code."""
    totals: dict[str, float] = {}
    for labels, value in samples(
        httpx.get(f"{frontend.url}/metrics").text, "flask_requests_total"
    ).items():
        status = dict(labels)["status"]
        totals[status] = totals.get(status, 0) + value
    return totals


def delta(before: dict, after: dict) -> dict[str, int]:
    return {
        k: int(after.get(k, 0) - before.get(k, 0))
        for k in after
        if after.get(k, 0) != before.get(k, 0)
    }


def run_json(name: str, *args: str, env: dict, timeout: float = 60) -> dict:
    result = script(name, *args, "--json", env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_consistent(summary: dict) -> None:
    assert sum(e["count"] for e in summary["endpoints"].values()) == summary["requests"]
    assert sum(summary["statuses"].values()) == summary["requests"]
    assert sum(e["errors"] for e in summary["endpoints"].values()) == summary["errors"]
    http_errors = sum(v for k, v in summary["statuses"].items() if int(k) >= 400)
    assert http_errors == summary["errors"]


def test_quick_test_hits_every_endpoint_and_the_metrics_agree(services, env):
    before = request_counts(services)
    summary = run_json("quick_test.sh", env=env)
    assert_consistent(summary)
    assert {
        "/",
        "/health",
        "/stats",
        "/items",
        "/items/<int:item_id>",
        "/orders",
        "/error",
        "/slow",
        "/metrics",
    } <= set(summary["endpoints"])
    assert summary["endpoints"]["/error"]["errors"] == summary["endpoints"]["/error"]["count"]
    # /metrics scrapes are not counted by the services themselves.
    statuses = dict(summary["statuses"])
    statuses["200"] -= summary["endpoints"]["/metrics"]["count"]
    assert delta(before, request_counts(services)) == {k: v for k, v in statuses.items() if v}


def test_quick_test_prints_a_table(env):
    result = script("quick_test.sh", env=env)
    assert result.returncode == 0, result.stderr
    assert "endpoint" in result.stdout and "p95 ms" in result.stdout
    assert result.stdout.strip().splitlines()[-2].startswith("total")


def test_generate_traffic_sends_n_requests_over_the_duration(services, env):
    before = request_counts(services)
    summary = run_json("generate_traffic.sh", "30", "3", env=env)
    assert summary["requests"] == 30
    assert_consistent(summary)
    # 30 requests due at i * 0.1 s: the last is due at 2.9 s.
    assert summary["elapsed_seconds"] >= 2.9
    assert delta(before, request_counts(services)) == summary["statuses"]


def test_traffic_spike_metrics_move_by_the_reported_count(services, env):
    before = request_counts(services)
    summary = run_json("traffic_spike.sh", "4", "2", env=env)
    assert summary["requests"] > 4
    assert_consistent(summary)
    assert delta(before, request_counts(services)) == summary["statuses"]


def test_continuous_traffic_low_is_one_request_per_second(services, env):
    before = request_counts(services)
    summary = run_json("continuous_traffic.sh", "low", "--max-duration", "3", env=env)
    assert summary["requests"] == 3  # due at 0, 1 and 2 s
    assert delta(before, request_counts(services)) == summary["statuses"]


def test_ctrl_c_prints_the_summary_so_far(services, env):
    before = sum(request_counts(services).values())
    proc = subprocess.Popen(
        [str(SCRIPTS / "continuous_traffic.sh"), "high", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll_until(
            lambda: sum(request_counts(services).values()) >= before + 5,
            "continuous traffic to reach the frontend",
            timeout=30,
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["requests"] >= 5
    assert_consistent(summary)


@pytest.mark.parametrize(
    "args",
    [
        ("generate_traffic.sh",),
        ("generate_traffic.sh", "ten", "60"),
        ("generate_traffic.sh", "100", "0"),
        ("generate_traffic.sh", "-5", "10"),
        ("traffic_spike.sh", "5"),
        ("traffic_spike.sh", "0", "30"),
        ("traffic_spike.sh", "5", "soon"),
        ("continuous_traffic.sh",),
        ("continuous_traffic.sh", "extreme"),
        ("continuous_traffic.sh", "low", "--max-duration", "-1"),
        ("background_traffic.sh",),
        ("background_traffic.sh", "restart"),
        ("quick_test.sh", "unexpected"),
    ],
)
def test_bad_arguments_print_usage_and_fail(args, env):
    result = script(*args, env=env)
    assert result.returncode == 2
    assert f"usage: {args[0]}" in result.stderr
    assert "error:" in result.stderr


def loadgen_processes(run_dir: Path) -> list[int]:
    """Pids of load generators writing into this test's run dir."""
    marker = str(run_dir).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"loadgen" in cmdline and marker in cmdline:
                pids.append(int(proc.name))
    return pids


def test_background_traffic_start_status_stop(services, env, tmp_path):
    assert script("background_traffic.sh", "status", env=env).returncode == 3
    started = script("background_traffic.sh", "start", env=env)
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "background-traffic.pid").read_text())
    try:
        again = script("background_traffic.sh", "start", env=env)
        assert again.returncode == 0 and "already running" in again.stdout
        assert loadgen_processes(tmp_path) == [pid]

        def status_with_traffic():
            result = script("background_traffic.sh", "status", env=env)
            assert result.returncode == 0, result.stdout + result.stderr
            return (
                "running" in result.stdout and " 0 requests" not in result.stdout and result.stdout
            )

        text = poll_until(status_with_traffic, "background traffic to report requests", timeout=30)
        assert f"pid {pid}" in text and "req/s" in text
        stopped = script("background_traffic.sh", "stop", env=env)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert loadgen_processes(tmp_path) == []
        assert not (tmp_path / "background-traffic.pid").exists()
        assert script("background_traffic.sh", "status", env=env).returncode == 3
    finally:
        for leftover in loadgen_processes(tmp_path):
            os.kill(leftover, signal.SIGKILL)
