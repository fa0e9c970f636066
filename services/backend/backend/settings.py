"""Backend settings from the environment.

Reads: LOG_LEVEL, HEALTH_FAILURE_RATE, SLOW_TIMEOUT_RATE, SLOW_MAX_DELAY_SECONDS,
SLOW_TIMEOUT_SECONDS, CHAOS_CRASH_ENABLED (all shared with the frontend). The backend
has no variables of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from obs_telemetry import common_settings


def load_settings(environ: Mapping[str, str] | None = None) -> dict:
    return common_settings(environ)
