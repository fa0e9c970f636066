"""Typed environment-variable readers, and the settings every service shares.

Reads: LOG_LEVEL, HEALTH_FAILURE_RATE, SLOW_TIMEOUT_RATE, SLOW_MAX_DELAY_SECONDS,
SLOW_TIMEOUT_SECONDS, CHAOS_CRASH_ENABLED, TELEMETRY_SIGNALS (see docs/services.md for
defaults). Each service adds its own variables on top through the same readers, so a bad
value always fails at start-up with a message naming the variable instead of a stack
trace mid-request.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}
SIGNALS = frozenset({"metrics", "traces", "logs"})

# gunicorn kills a worker that is silent for `timeout` (30 s in gunicorn_conf); every
# deliberate sleep must stay well below it or /slow would look like a hung worker.
MAX_SLEEP_SECONDS = 25.0


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def env_str(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip()
    return value or default


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def env_float(
    environ: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be <= {maximum}")
    return value


def env_int(
    environ: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be <= {maximum}")
    return value


def env_signals(environ: Mapping[str, str], name: str = "TELEMETRY_SIGNALS") -> frozenset[str]:
    """The telemetry signals switched on: a comma list of metrics, traces, logs, or none.

    `make bench` measures each signal alone and the bare app (none) with the same code;
    in production all three stay on (the default).
    """
    raw = env_str(environ, name, "metrics,traces,logs").lower()
    if raw == "none":
        return frozenset()
    chosen = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = chosen - SIGNALS
    if unknown or not chosen:
        raise ConfigError(
            f"{name}={raw!r}: use a comma list of {', '.join(sorted(SIGNALS))}, or none"
        )
    return chosen


def common_settings(environ: Mapping[str, str] | None = None) -> dict:
    """Settings shared by every service, as Flask config keys."""
    env = os.environ if environ is None else environ
    log_level = env_str(env, "LOG_LEVEL", "info").lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={log_level!r} must be one of {sorted(_LOG_LEVELS)}")
    settings = {
        "LOG_LEVEL": log_level,
        "HEALTH_FAILURE_RATE": env_float(env, "HEALTH_FAILURE_RATE", 0.2, minimum=0, maximum=1),
        "SLOW_TIMEOUT_RATE": env_float(env, "SLOW_TIMEOUT_RATE", 0.3, minimum=0, maximum=1),
        "SLOW_MAX_DELAY_SECONDS": env_float(
            env, "SLOW_MAX_DELAY_SECONDS", 5.0, minimum=0, maximum=MAX_SLEEP_SECONDS
        ),
        "SLOW_TIMEOUT_SECONDS": env_float(
            env, "SLOW_TIMEOUT_SECONDS", 2.0, minimum=0, maximum=MAX_SLEEP_SECONDS
        ),
        "CHAOS_CRASH_ENABLED": env_bool(env, "CHAOS_CRASH_ENABLED", False),
        "TELEMETRY_SIGNALS": env_signals(env),
        # Flask answers 413 above this; our largest legitimate body is a small order.
        "MAX_CONTENT_LENGTH": 64 * 1024,
    }
    return settings
