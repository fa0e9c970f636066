"""The local stack, started once per test session with the same code as `make demo`.

Reads CI: with CI=true a backend that is not installed fails the run; elsewhere it is
skipped with the command that installs it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import httpx
import pytest
from obs_tools.common.versions import alertmanager_ui_dir, elasticsearch_home, jaeger_binary
from obs_tools.loadgen.cli import background_argv
from obs_tools.localstack import runner
from obs_tools.localstack.components import LocalStack, Ports
from obs_tools.localstack.supervisor import Supervisor

from tests.support.requirements import unavailable

# What each backend needs on this machine, and what to tell a user who lacks it.
REQUIREMENTS = {
    "Prometheus": lambda: shutil.which("prometheus"),
    "Alertmanager": lambda: shutil.which("prometheus-alertmanager"),
    "Alertmanager web UI": lambda: (alertmanager_ui_dir() / "script.js").exists(),
    "Elasticsearch exporter": lambda: shutil.which("prometheus-elasticsearch-exporter"),
    "Jaeger": lambda: jaeger_binary().exists(),
    "Elasticsearch": lambda: (elasticsearch_home() / "bin" / "elasticsearch").exists(),
    "Java (for Elasticsearch)": lambda: shutil.which("java"),
}


def require_backends(*names: str) -> None:
    """Skip (fail with CI=true) unless these backends (default: all) are installed."""
    missing = [name for name in names or REQUIREMENTS if not REQUIREMENTS[name]()]
    if not missing:
        return
    unavailable(f"not installed: {', '.join(missing)}; run `make bootstrap`")


@dataclass
class RunningStack:
    stack: LocalStack
    supervisor: Supervisor

    def url(self, component: str) -> str:
        return self.stack.url(component)

    def prometheus_query(self, expr: str) -> list[dict]:
        response = httpx.get(
            f"{self.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10
        )
        response.raise_for_status()
        return response.json()["data"]["result"]

    def failure_context(self, *components: str) -> str:
        return "\n".join(self.supervisor.tail(c) for c in components)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    require_backends()
    ports = Ports.free()
    stack = LocalStack(
        tmp_path_factory.mktemp("stack"),
        ports,
        service_env_overrides={
            "CHAOS_CRASH_ENABLED": "true",
            # Export spans twice a second so that Jaeger has them when tests look.
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        },
        traffic_argv=background_argv(f"http://127.0.0.1:{ports.frontend}", rate=5),
    )
    progress_log = stack.run_dir / "startup.log"
    stack.run_dir.mkdir(parents=True, exist_ok=True)

    def progress(line: str) -> None:
        with open(progress_log, "a") as out:
            out.write(line + "\n")

    supervisor = runner.start(stack, progress)
    try:
        supervisor.start_program("traffic")
        yield RunningStack(stack, supervisor)
    finally:
        runner.stop(stack, supervisor)
