"""Shared instrumentation for the stack's Flask services.

Reads no environment variables on import (nothing happens on import). See
extension.Telemetry for the entry point, ops.bp for the operational endpoints and
gunicorn_conf for the server settings both services run with.
"""

from .errors import SIMULATED_ERRORS, AppError
from .extension import Telemetry, instrument_http_client, record_error, state_of
from .settings import ConfigError, common_settings

__version__ = "1.0.0"

__all__ = [
    "SIMULATED_ERRORS",
    "AppError",
    "ConfigError",
    "Telemetry",
    "common_settings",
    "instrument_http_client",
    "record_error",
    "state_of",
]
