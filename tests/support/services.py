"""Run the two services as real gunicorn processes for tests, with the same command
lines the local stack uses (stack.components). Reads no environment variables.
"""

from __future__ import annotations

from pathlib import Path

from obs_tools.common.processes import ManagedProcess
from obs_tools.localstack.components import service_argv, service_env


def start_service(name: str, module: str, port: int, log_dir: Path, **env: str) -> ManagedProcess:
    """Start `module` (backend or frontend) under gunicorn on 127.0.0.1:port."""
    defaults = {
        # Export often, so tests see spans within a fraction of a second.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "HEALTH_FAILURE_RATE": "0",
        "SLOW_TIMEOUT_RATE": "0",
        "GUNICORN_THREADS": "4",
    }
    defaults.update(env)
    process = ManagedProcess(
        name, service_argv(module, port), log_dir, env=service_env(module, **defaults)
    )
    process.url = f"http://127.0.0.1:{port}"
    return process
