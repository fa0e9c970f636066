"""Run the two services as real gunicorn processes for tests and the demo.

Reads no environment variables; callers pass the environment each service gets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .processes import ManagedProcess

REPO = Path(__file__).resolve().parents[2]
SERVICE_PATHS = [REPO / "services" / name for name in ("telemetry", "frontend", "backend")]


def service_env(**overrides: str) -> dict[str, str]:
    env = {
        "PYTHONPATH": os.pathsep.join(str(p) for p in SERVICE_PATHS),
        "PYTHONUNBUFFERED": "1",
        # Export often, so tests see spans within a fraction of a second.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "HEALTH_FAILURE_RATE": "0",
        "SLOW_TIMEOUT_RATE": "0",
        "GUNICORN_THREADS": "4",
    }
    env.update(overrides)
    return env


def start_service(name: str, module: str, port: int, log_dir: Path, **env: str) -> ManagedProcess:
    """Start `module` (backend or frontend) under gunicorn on 127.0.0.1:port."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:obs_telemetry.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        f"{module}.wsgi:app",
    ]
    env.setdefault("OTEL_SERVICE_NAME", module)
    process = ManagedProcess(name, argv, log_dir, env=service_env(**env))
    process.url = f"http://127.0.0.1:{port}"
    return process
