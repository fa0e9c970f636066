"""Frontend settings from the environment.

Reads: BACKEND_URL (http://localhost:5001), BACKEND_CONNECT_TIMEOUT (1.0 s),
BACKEND_READ_TIMEOUT (10.0 s), plus the settings shared with the backend (LOG_LEVEL,
HEALTH_FAILURE_RATE, SLOW_TIMEOUT_RATE, SLOW_MAX_DELAY_SECONDS, SLOW_TIMEOUT_SECONDS,
CHAOS_CRASH_ENABLED).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from obs_telemetry import ConfigError, common_settings
from obs_telemetry.settings import env_float, env_str


def load_settings(environ: Mapping[str, str] | None = None) -> dict:
    env = os.environ if environ is None else environ
    settings = common_settings(env)
    url = env_str(env, "BACKEND_URL", "http://localhost:5001").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"BACKEND_URL={url!r} must be an http(s) URL such as http://backend:5001")
    read_timeout = env_float(env, "BACKEND_READ_TIMEOUT", 10.0, minimum=0.1, maximum=25.0)
    # The backend's /slow may legitimately take SLOW_MAX_DELAY_SECONDS; a shorter read
    # timeout would turn every slow-but-successful call into a false timeout.
    if read_timeout <= settings["SLOW_MAX_DELAY_SECONDS"]:
        raise ConfigError(
            f"BACKEND_READ_TIMEOUT={read_timeout:g} must exceed "
            f"SLOW_MAX_DELAY_SECONDS={settings['SLOW_MAX_DELAY_SECONDS']:g}"
        )
    settings.update(
        BACKEND_URL=url,
        BACKEND_CONNECT_TIMEOUT=env_float(
            env, "BACKEND_CONNECT_TIMEOUT", 1.0, minimum=0.01, maximum=10.0
        ),
        BACKEND_READ_TIMEOUT=read_timeout,
    )
    return settings
